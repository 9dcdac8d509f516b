"""A base volume's state machine: an image file copied into a host's storage pool (`hypervisor.images`).

The row is the upload's lock. One worker inserts it `uploading` (a worker that finds it stale, or the
redelivery of the same operation, takes the upload over and it stays uploading); once the copy is
verified it is `ready` for good. A failed upload deletes its row rather than moving it: the next use
starts again from no row.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["State", "TRANSITIONS", "may_move"]


class State(models.TextChoices):
    UPLOADING = "uploading", _("Uploading")
    READY = "ready", _("Ready")


TRANSITIONS: dict[State, frozenset[State]] = {
    State.UPLOADING: frozenset({State.READY}),
    State.READY: frozenset(),
}


def may_move(old: str, new: str) -> bool:
    """Whether a base volume ever moves from state `old` to `new` (a takeover keeps it uploading)."""
    return old == new or State(new) in TRANSITIONS[State(old)]
