"""A subscription's state machine: what a customer pays for one server, from the order to its end.

A subscription opens `active`. Dunning suspends the active subscriptions of an account with an invoice
past its grace period (`suspended`) and ends them after the termination period; settling the account
makes them active again. A subscription ends (`ended`) when its server is deleted or never became usable,
when an hourly one changes plan (a new subscription takes over), or when dunning terminates it. Only
undoing a failed resize reopens an ended subscription: the hourly one the plan change ended is active
again (and the one it opened is deleted).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["Status", "TRANSITIONS", "may_move"]


class Status(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")
    ENDED = "ended", _("Ended")


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.ACTIVE: frozenset({Status.SUSPENDED, Status.ENDED}),
    Status.SUSPENDED: frozenset({Status.ACTIVE, Status.ENDED}),
    Status.ENDED: frozenset({Status.ACTIVE}),
}


def may_move(old: str, new: str) -> bool:
    """Whether billing ever moves a subscription from `old` to `new` (staying put always may)."""
    return old == new or Status(new) in TRANSITIONS[Status(old)]
