"""Whether a display name can be printed on a certificate: a phone number is not a name.

Zoom gives a dial-in caller their phone number (often partly masked) as user_name; printed,
it would put contact data on a public verify page, so such a person counts as having no name.
"""

from __future__ import annotations

import re

# Digits and what phone numbers are written with: spaces, +, -, parentheses, dots, slashes,
# and the * or x Zoom masks digits with; nothing else (a letter makes it a name).
_PHONE_CHARACTERS = re.compile(r"[\d\s+\-().*/#x]+", re.IGNORECASE)
MIN_PHONE_DIGITS = 6  # below this, "Class 1" style digits are not a callable number


def is_phone_number(name: str | None) -> bool:
    """True when `name` is a phone number (only phone characters and at least 6 digits)."""
    text = (name or "").strip()
    if not text or not _PHONE_CHARACTERS.fullmatch(text):
        return False
    return sum(c.isdecimal() for c in text) >= MIN_PHONE_DIGITS


def why_no_name(name: str) -> str | None:
    """Why a printable name cannot go on a certificate ('without a name', 'a phone number'), or None."""
    if not name:
        return "without a name"
    if is_phone_number(name):
        return "a phone number as name"
    return None
