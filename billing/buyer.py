"""Who the invoices are made out to: the customer's billing details (a company's name and NPWP, or an
individual's NIK, and an address), which the customer gives on the billing page. Invoices copy them when
issued (billing.invoices), so that a tax invoice never changes afterwards."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils.translation import gettext as _

from .errors import BillingError
from .models import BillingProfile

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

FIELDS = ("company_name", "tax_id_kind", "tax_id", "billing_address")


def profile_of(account: AbstractBaseUser) -> BillingProfile | None:
    return BillingProfile.objects.filter(account=account).first()


def name_of(account: AbstractBaseUser, profile: BillingProfile | None) -> str:
    """The buyer's name on an invoice: the company's, else the account holder's, else the email."""
    if profile and profile.company_name:
        return profile.company_name
    full = account.get_full_name() if hasattr(account, "get_full_name") else ""
    return full or account.email


def clean_tax_id(kind: str, value: str) -> str:
    """The tax ID as digits: an NPWP has 15 digits (the old format, dots and dashes allowed) or 16 (since
    2024, the NIK for individuals); a NIK has 16; all zeros is none. Raises BillingError with the
    reason."""
    digits = re.sub(r"[.\-\s]", "", value or "")
    if not digits:
        return ""
    if not digits.isdigit():
        raise BillingError(_("A tax ID has only digits (dots and dashes are allowed)."))
    if not digits.strip("0"):
        # "000000000000000" is what forms get when someone has no NPWP: it is no tax ID, and a tax invoice
        # made out to it would claim a registered buyer.
        raise BillingError(_("A tax ID of only zeros is not a tax ID: leave it blank if you have none."))
    if kind == "npwp" and len(digits) not in (15, 16):
        raise BillingError(_("An NPWP has 15 or 16 digits."))
    if kind == "nik" and len(digits) != 16:
        raise BillingError(_("A NIK has 16 digits."))
    if kind not in ("npwp", "nik"):
        raise BillingError(_("Say whether the tax ID is an NPWP or a NIK."))
    return digits


def save_details(account: AbstractBaseUser, values: dict[str, str]) -> BillingProfile:
    """Set the customer's billing details (all of FIELDS); the tax ID is checked and kept as digits. New
    invoices carry them; issued ones keep what they were issued with."""
    tax_id = clean_tax_id(values.get("tax_id_kind", ""), values.get("tax_id", ""))
    with transaction.atomic():
        profile, _created = BillingProfile.objects.select_for_update().get_or_create(account=account)
        profile.company_name = values.get("company_name", "").strip()
        profile.tax_id_kind = values.get("tax_id_kind", "") if tax_id else ""
        profile.tax_id = tax_id
        profile.billing_address = values.get("billing_address", "").strip()
        profile.save(update_fields=list(FIELDS))
    return profile
