"""Template filters for backups: sizes in binary units as people read them ("1.2 GiB", "340 KiB"),
localised (a decimal comma in Indonesian), and a long copy's progress (Operation.progress)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils import formats
from django.utils.translation import ngettext

register = template.Library()

UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


@register.filter
def byte_size(value) -> str:
    """Bytes in the largest binary unit that keeps the number under 1024, with one decimal: 1288490188 →
    "1.2 GiB", 3221225472 → "3.0 GiB"; fewer than 1024 bytes as bytes ("512 bytes"); "" for no value."""
    if value in (None, ""):
        return ""
    count = int(value)
    if abs(count) < 1024:
        return ngettext("%(count)s byte", "%(count)s bytes", count) % {"count": count}
    size, index = Decimal(count) / 1024, 0
    while abs(size) >= 1024 and index < len(UNITS) - 1:
        size, index = size / 1024, index + 1
    size = size.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    number = formats.number_format(size, decimal_pos=1, use_l10n=True, force_grouping=True)
    return f"{number} {UNITS[index]}"


@register.filter
def progress_of(operation) -> dict | None:
    """An operation's progress as the templates show it: {"percent": 0-100, "done": "1.2 GiB",
    "total": "3.0 GiB"} (done and total empty when the byte counts are unknown); None without progress."""
    progress = getattr(operation, "progress", None)
    if not isinstance(progress, dict) or not progress:
        return None
    try:
        percent = max(0, min(100, int(progress.get("percent") or 0)))
    except (TypeError, ValueError):
        percent = 0
    done, total = progress.get("bytes_done"), progress.get("bytes_total")
    known = isinstance(done, int) and isinstance(total, int) and total > 0
    return {
        "percent": percent,
        "done": byte_size(done) if known else "",
        "total": byte_size(total) if known else "",
    }
