import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def validate_hostname(value: str) -> str:
    """A hostname of RFC 1123 labels (letters, digits, hyphens; 1-63 each; 253 in all), lowercased."""
    name = (value or "").strip().lower().rstrip(".")
    if not name:
        raise ValidationError(_("Enter a hostname."), code="invalid_hostname")
    if len(name) > 253:
        raise ValidationError(_("A hostname has at most 253 characters."), code="invalid_hostname")
    for label in name.split("."):
        if not LABEL.match(label):
            raise ValidationError(
                _(
                    "“%(label)s” is not a valid hostname label: use letters, digits and hyphens (1 to 63 "
                    "characters), not starting or ending with a hyphen."
                ),
                params={"label": label[:70]},
                code="invalid_hostname",
            )
    if name.split(".")[-1].isdigit():
        raise ValidationError(_("A hostname cannot end in a numeric label."), code="invalid_hostname")
    return name
