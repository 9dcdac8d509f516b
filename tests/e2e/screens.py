"""Screenshots of a page at desktop and phone width that also check it fits: the page never scrolls
sideways and none of the given boxes lets its content spill out."""

from __future__ import annotations

from pathlib import Path

DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def overflowing(boxes: str) -> str:
    """A script listing the boxes (a CSS selector list) whose content is wider than they are."""
    return f"""() => [...document.querySelectorAll('{boxes}')]
  .filter((el) => el.scrollWidth > el.clientWidth + 1)
  .map((el) => el.className + ': ' + el.textContent.trim().slice(0, 60))"""


def shoot(page, directory: Path, name: str, boxes: str) -> None:
    """Full-page screenshots at 1280 and 390 px (`<name>-1280.png`, `<name>-390.png`); at neither width does
    the page scroll sideways or a box overflow. The page is left at desktop width."""
    for label, size in (("1280", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(size)
        assert page.evaluate(NO_SIDEWAYS_SCROLL), (name, label)
        assert page.evaluate(overflowing(boxes)) == [], (name, label)
        page.screenshot(path=str(directory / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
