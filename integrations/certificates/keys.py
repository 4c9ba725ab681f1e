"""The signing key on disk: made once (mode 0600, never overwritten), read by CLI and web."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from integrations.certificates.signing import generate_key, load_private_key, private_key_pem


class KeyFileError(Exception):
    "The signing key file is missing, unreadable or not an Ed25519 key"


def write_new_key(path: str) -> Ed25519PrivateKey:
    """Create a new key at `path`, owner-only; KeyFileError if the file (or a symlink) exists."""
    key = generate_key()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} exists: refusing to overwrite a signing key (certificates signed by it would fail)"
        ) from None
    except OSError as e:
        raise KeyFileError(f"cannot create {path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(key))
        f.flush()
        os.fsync(f.fileno())
    return key


def read_key(path: str | None) -> Ed25519PrivateKey:
    """The private key in `path` (CERT_SIGNING_KEY_FILE); KeyFileError naming what is wrong."""
    if not path:
        raise KeyFileError("CERT_SIGNING_KEY_FILE is not set (make a key with: worker.py certificates keygen)")
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise KeyFileError(f"cannot read signing key {path}: {e.strerror}") from None
    try:
        return load_private_key(pem)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path} is not an Ed25519 private key in PEM: {e}") from None
