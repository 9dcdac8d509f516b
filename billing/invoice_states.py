"""An invoice's state machine. Invoices are issued `open`: numbered, charged to the ledger and mailed at
once (`billing.invoices.issue`); `draft` is only the column's default, and no billing code makes a
draft or moves one. Settling the account pays open invoices oldest first (`paid`, from a payment, a
credit or the balance at issue). Staff void an open invoice (`void`, its charge credited back), and so
does billing for a server that never became usable or a resize that failed. A paid or void invoice
never changes again: a refund or a later correction is a new ledger entry, not a change of the
invoice."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

__all__ = ["Status", "TRANSITIONS", "may_move"]


class Status(models.TextChoices):
    DRAFT = "draft", _("Draft")
    OPEN = "open", _("Open")
    PAID = "paid", _("Paid")
    # "Void" as a status ("Dibatalkan"), apart from the staff's "Void" button ("Batalkan", context "invoice
    # action") and from the generic "Cancel".
    VOID = "void", pgettext_lazy("invoice status", "Void")


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset(),
    Status.OPEN: frozenset({Status.PAID, Status.VOID}),
    Status.PAID: frozenset(),
    Status.VOID: frozenset(),
}


def may_move(old: str, new: str) -> bool:
    """Whether billing ever moves an invoice from `old` to `new` (staying put always may)."""
    return old == new or Status(new) in TRANSITIONS[Status(old)]
