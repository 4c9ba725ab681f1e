"""Certificate codes: a compact signed payload that proves a certificate offline (issue 17).

A code is base64url (no padding) of `payload || signature`, where `signature` is the
Ed25519 signature (64 bytes) over the payload bytes and the payload is, in order:

    version (1 byte, = 1)
    number, date (YYYYMMDD), attended minutes   (unsigned LEB128 varints)
    meeting id, score, name                     (varint byte length + UTF-8; score "" = none)

Everything a verifier needs is in the code, so `verify_code(code, public_key)` needs no
database; the service adds what a code cannot say (revocation). The signature makes codes
unguessable (2^-128 for a forgery); a typical code is 110 to 150 characters, which fits a
version-9 QR code at error level M. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

VERSION = 1
SIGNATURE_BYTES = 64
MAX_CODE_CHARS = 1200  # a name of a few hundred characters; anything longer is not ours


class InvalidCode(Exception):
    "The certificate code is malformed, altered or not signed by this key"


@dataclass(frozen=True)
class CertificateContent:
    """What a certificate's code proves: number, meeting, date, minutes, score and printed name."""

    number: int
    meeting_id: str
    date: str  # YYYY-MM-DD
    attended_minutes: int
    score: str | None
    name: str


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative values cannot be encoded")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise InvalidCode("certificate code is truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _varint(len(raw)) + raw


def _read_text(data: bytes, pos: int) -> tuple[str, int]:
    length, pos = _read_varint(data, pos)
    if pos + length > len(data):
        raise InvalidCode("certificate code is truncated")
    try:
        return data[pos : pos + length].decode("utf-8"), pos + length
    except UnicodeDecodeError:
        raise InvalidCode("certificate code holds invalid text") from None


def payload_bytes(content: CertificateContent) -> bytes:
    """The canonical bytes that are signed: one encoding per content, so one code per content."""
    date = int(content.date.replace("-", ""))
    return (
        bytes([VERSION])
        + _varint(content.number)
        + _varint(date)
        + _varint(content.attended_minutes)
        + _text(content.meeting_id)
        + _text(content.score or "")
        + _text(content.name)
    )


def parse_payload(data: bytes) -> CertificateContent:
    """The content of payload bytes; InvalidCode when they are not a whole version-1 payload."""
    if not data or data[0] != VERSION:
        raise InvalidCode("unknown certificate code version")
    number, pos = _read_varint(data, 1)
    date, pos = _read_varint(data, pos)
    minutes, pos = _read_varint(data, pos)
    meeting_id, pos = _read_text(data, pos)
    score, pos = _read_text(data, pos)
    name, pos = _read_text(data, pos)
    if pos != len(data):
        raise InvalidCode("certificate code has trailing bytes")
    text = f"{date:08d}"
    return CertificateContent(number, meeting_id, f"{text[:4]}-{text[4:6]}-{text[6:]}", minutes, score or None, name)


def sign_content(content: CertificateContent, key: Ed25519PrivateKey) -> str:
    """The code of `content`: base64url(payload || Ed25519 signature), unpadded."""
    payload = payload_bytes(content)
    return base64.urlsafe_b64encode(payload + key.sign(payload)).rstrip(b"=").decode("ascii")


def decode_code(code: str) -> tuple[bytes, bytes]:
    """(payload, signature) of a code; InvalidCode when it is not base64url of the right shape."""
    code = code.strip()
    if not code or len(code) > MAX_CODE_CHARS:
        raise InvalidCode("certificate code has the wrong length")
    try:
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCode("certificate code is not base64url") from None
    # Re-encoding must give the code back: no second spelling of one code (padding bits, etc.).
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != code:
        raise InvalidCode("certificate code is not canonical base64url")
    if len(raw) <= SIGNATURE_BYTES:
        raise InvalidCode("certificate code is too short")
    return raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]


def verify_code(code: str, public_key: Ed25519PublicKey) -> CertificateContent:
    """The content a code proves; raises InvalidCode unless `public_key` signed exactly it."""
    payload, signature = decode_code(code)
    try:
        public_key.verify(signature, payload)
    except InvalidSignature:
        raise InvalidCode("certificate code is not signed by this key (forged or altered)") from None
    return parse_payload(payload)


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 signing key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM (the file itself is mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The public key as SubjectPublicKeyInfo PEM (what /verify/key publishes)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; ValueError when it is something else."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (or the public half of a private key PEM)."""
    if b"PRIVATE KEY" in pem:
        return load_private_key(pem).public_key()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A short fingerprint of the public key (first 16 hex of SHA-256 of its raw bytes)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
