"""The certificate's template: its words and optional background, from a JSON file, not code.

`CERT_TEMPLATE_FILE` names a JSON object with any of the keys of `Template` below; a
relative `background_image` (a JPEG, drawn under everything, stretched to the page) is
relative to the template file. Unknown keys are an error, so a typo does not pass silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace


class TemplateError(Exception):
    "The certificate template file is unreadable or holds unknown or wrong-typed keys"


@dataclass(frozen=True)
class Template:
    """What the certificate says around the person's name."""

    title: str = "Certificate of Attendance"
    intro: str = "This certifies that"
    # The event's name; empty: the Zoom topic of the meeting.
    event: str = ""
    organizer: str = ""
    signatory: str = ""
    signatory_role: str = ""
    background_image: str | None = None


def load_template(path: str | None) -> Template:
    """The template in `path`, or the default when no file is configured."""
    if not path:
        return Template()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise TemplateError(f"cannot read certificate template {path}: {e.strerror}") from None
    except ValueError as e:
        raise TemplateError(f"certificate template {path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"certificate template {path} must hold a JSON object")
    known = {f.name for f in fields(Template)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TemplateError(f"certificate template {path}: unknown keys {unknown} (known: {sorted(known)})")
    for name, value in data.items():
        if not (isinstance(value, str) or (name == "background_image" and value is None)):
            raise TemplateError(f"certificate template {path}: {name} must be a string")
    template = replace(Template(), **data)
    if template.background_image and not os.path.isabs(template.background_image):
        base = os.path.dirname(os.path.abspath(path))
        template = replace(template, background_image=os.path.join(base, template.background_image))
    return template
