"""What billing refuses with: every error a billing service raises is a BillingError carrying a message
for the person who asked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


class BillingError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InsufficientCredit(BillingError):
    pass


class OwnAccount(BillingError):
    """Staff may not move money on, or set the terms of, their own account."""


class ReferenceTaken(BillingError):
    """A payment reference is already used by another customer's payment."""


def refuse_own(account: AbstractBaseUser, by: AbstractBaseUser | None) -> None:
    """Raise OwnAccount when the staff member `by` acts on their own account."""
    if by is not None and by.pk == account.pk:
        raise OwnAccount(
            _(
                "You cannot record payments, credits, discounts or prices on your own account; "
                "ask another staff member."
            )
        )
