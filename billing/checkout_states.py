"""A checkout's state machine (billing.checkouts). A checkout starts `pending` when the provider made it,
and ends once: `paid` when the provider's status API confirms the payment (its amount credited once),
`expired` or `failed` when it says the customer did not pay. A provider that confirms a payment of a
checkout that had expired or failed here (its notification arrived late) still moves it to `paid`: the
money arrived; one it confirms with another amount or currency moves it to `failed` with the reason. A
paid checkout never changes again (a refund the provider reports later is for staff, not for billing to
undo)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["Status", "TRANSITIONS", "FINAL", "may_move"]


class Status(models.TextChoices):
    PENDING = "pending", _("Waiting for payment")
    PAID = "paid", _("Paid")
    EXPIRED = "expired", _("Expired")
    FAILED = "failed", _("Failed")


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PAID, Status.EXPIRED, Status.FAILED}),
    Status.EXPIRED: frozenset({Status.PAID, Status.FAILED}),
    Status.FAILED: frozenset({Status.PAID}),
    Status.PAID: frozenset(),
}

FINAL = frozenset({Status.PAID, Status.EXPIRED, Status.FAILED})


def may_move(old: str, new: str) -> bool:
    """Whether billing ever moves a checkout from `old` to `new` (staying put always may)."""
    return old == new or Status(new) in TRANSITIONS[Status(old)]
