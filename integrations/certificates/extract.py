"""Finding a certificate code in what a verifier has: the code, its verify URL, or the PDF.

An argument with `://` (or starting /verify/) is a URL; one ending .pdf, or with any character
a code cannot hold (a code is base64url only), is a file name; anything else is a code.
"""

from __future__ import annotations

import binascii
import re
from urllib.parse import unquote, urlsplit

from integrations.certificates.render import KEYWORD_PREFIX
from integrations.certificates.signing import InvalidCode

_HEX_KEYWORDS = re.compile(rb"/Keywords\s*<FEFF([0-9A-Fa-f]+)>")
_URI = re.compile(rb"/URI\s*\(([^)]*)\)")
_CODE_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")


class NotACertificate(InvalidCode):
    "The argument is a file that is not a certificate PDF, or neither a code, a URL nor a readable file"


def code_from_url(url: str) -> str:
    """The CODE of a PUBLIC_BASE_URL/verify/CODE address."""
    path = urlsplit(url.strip()).path
    head, _, code = path.rstrip("/").rpartition("/verify/")
    if not code or "/" in code:
        raise InvalidCode(f"not a certificate verify URL: {url!r}")
    return unquote(code)


def code_from_pdf(data: bytes, name: str = "this file") -> str:
    """The code a certificate PDF carries in its metadata (/Keywords), or else in its QR code's link."""
    if b"%PDF-" not in data[:1024]:
        raise NotACertificate(f"{name} is not a PDF (give a certificate's code, verify URL or PDF)")
    match = _HEX_KEYWORDS.search(data)
    if match:
        try:
            keywords = binascii.unhexlify(match.group(1)).decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError):
            keywords = ""
        if keywords.startswith(KEYWORD_PREFIX):
            return keywords[len(KEYWORD_PREFIX) :]
    match = _URI.search(data)
    if match:
        return code_from_url(match.group(1).decode("ascii", "replace"))
    raise InvalidCode("no certificate code found in this PDF")


def code_from_argument(argument: str, read_file=None) -> str:
    """CODE, URL or PDF file name -> the code (a file is read with `read_file(path) -> bytes`)."""
    text = argument.strip()
    if "://" in text or text.startswith("/verify/"):
        return code_from_url(text)
    if read_file is not None and (text.lower().endswith(".pdf") or not _CODE_CHARACTERS.fullmatch(text)):
        try:
            data = read_file(text)
        except OSError as e:
            hint = "" if text.lower().endswith(".pdf") else " (and it is not a certificate code or verify URL)"
            raise NotACertificate(f"cannot read {text}: {e.strerror}{hint}") from None
        return code_from_pdf(data, text)
    return text
