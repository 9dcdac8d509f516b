"""What a subscription pays for. Billing knows a server only by its subscription's `reference`; the app
that owns servers registers a finder that returns the live ones for an account (the panel does, in
`panel.servers.billing_hooks`), so billing's pages can name and link them without importing that app."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Finder = Callable[[Any, list[str]], dict[str, Any]]

_finders: list[Finder] = []


def register(finder: Finder) -> Finder:
    """Register `finder(account, references) -> {reference: subject}`; usable as a decorator."""
    if finder not in _finders:
        _finders.append(finder)
    return finder


def live_subjects(account, references: Iterable[str]) -> dict[str, Any]:
    """The account's live subjects (servers) by subscription reference; unknown or gone ones are left out."""
    references = [str(reference) for reference in references]
    found: dict[str, Any] = {}
    for finder in _finders:
        found.update(finder(account, references))
    return found
