"""The seller's profile: the legal name, address and tax ID printed on invoices, and the bank account and
instructions customers are told to pay to. One row (`SellerProfile`, pk 1) that admins edit on the billing
settings page; reading it is one query, and a page that has none yet gets an empty, unsaved profile.

Older installations set `BILLING_COMPANY_NAME` and `BANK_TRANSFER_INSTRUCTIONS` in the environment; they
are still used while the profile leaves the seller's name and the extra instructions blank."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import signals
from billing.models import SellerProfile

# The fields admins edit, in the order the settings page and the audit log name them.
FIELDS = (
    "legal_name",
    "address",
    "tax_id",
    "email",
    "phone",
    "bank_name",
    "account_number",
    "account_holder",
    "payment_note",
)
# The switches admins set on the same page (booleans): a value left out of `save_profile`'s values keeps
# what it is.
FLAGS = ("unique_amount_codes",)


def profile() -> SellerProfile:
    """The seller's profile; an empty one (not saved) when admins have not set it yet."""
    found = SellerProfile.objects.filter(pk=SellerProfile.SINGLETON_PK).select_related("updated_by").first()
    return found or SellerProfile()


class ChangedMeanwhile(Exception):
    """Another admin saved the profile after this one's form was drawn: saving would undo their change."""


def version_of(profile: SellerProfile) -> str:
    """What the settings form carries to tell whether the profile changed since it was drawn."""
    return profile.updated_at.isoformat() if profile.updated_at else ""


def save_profile(values: dict[str, str | bool], *, by, version: str | None = None) -> list[str]:
    """Set the profile's fields to `values` (all of FIELDS, and any of FLAGS) and return the names of those
    that changed; nothing is written when none did. With the `version` the form was drawn from, a profile
    another admin saved meanwhile raises ChangedMeanwhile and nothing is written. Sends
    `signals.seller_profile_changed` in the transaction, so that the audit log records the change with
    it."""
    with transaction.atomic():
        SellerProfile.objects.get_or_create(pk=SellerProfile.SINGLETON_PK)
        current = SellerProfile.objects.select_for_update().get(pk=SellerProfile.SINGLETON_PK)
        if version is not None and version != version_of(current):
            raise ChangedMeanwhile
        wanted = {name: values[name] for name in FIELDS}
        wanted.update({name: bool(values[name]) for name in FLAGS if name in values})
        changed = [name for name, value in wanted.items() if getattr(current, name) != value]
        if not changed:
            return []
        for name in changed:
            setattr(current, name, wanted[name])
        current.updated_at = timezone.now()
        current.updated_by = by
        current.save()
        signals.seller_profile_changed.send(sender=None, profile=current, changed=changed, by=by)
    return changed


def seller_name(seller: SellerProfile) -> str:
    """The name at the top of an invoice: the legal name, else BILLING_COMPANY_NAME, else the panel's."""
    return seller.legal_name or getattr(settings, "BILLING_COMPANY_NAME", "") or _("VPS Panel")


def extra_instructions(seller: SellerProfile) -> str:
    """What customers are told besides the account: the profile's text, else BANK_TRANSFER_INSTRUCTIONS."""
    return seller.payment_note or getattr(settings, "BANK_TRANSFER_INSTRUCTIONS", "") or ""


@dataclass(frozen=True)
class PaymentDetails:
    """How to pay by bank transfer, as the billing page and open invoices show it."""

    bank_name: str
    account_number: str
    account_holder: str
    instructions: str
    contact_email: str
    contact_phone: str

    @property
    def configured(self) -> bool:
        """Whether customers are told anything to pay with (else they are asked to contact support)."""
        return bool(self.account_number or self.instructions)


def payment_details(seller: SellerProfile) -> PaymentDetails:
    return PaymentDetails(
        bank_name=seller.bank_name,
        account_number=seller.account_number,
        account_holder=seller.account_holder,
        instructions=extra_instructions(seller),
        contact_email=seller.email,
        contact_phone=seller.phone,
    )
