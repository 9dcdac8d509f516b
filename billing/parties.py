"""Who an invoice is made out between, as they are when it is issued: the seller (billing.seller) and the
buyer (billing.buyer), read with the lock of the buyer's account, in one statement for one account (an
order) or a batch of them (a billing run)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

import prepared_statements

from . import tax
from .models import BillingProfile, SellerProfile

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


@dataclass(frozen=True)
class Parties:
    """What an invoice records of who sold and who bought, as they are when it is issued; and the buyer's
    billing terms (billing.prices.monthly_price: None without any), read with them."""

    seller_name: str
    seller_address: str
    seller_tax_id: str
    unique_amount_codes: bool
    buyer_name: str
    buyer_address: str
    buyer_tax_id_kind: str
    buyer_tax_id: str
    rule: tax.TaxRule
    terms: BillingProfile | None = None


_PARTIES = """
SELECT u.id, u.first_name, u.last_name, u.email, b.company_name AS company, b.billing_address AS address,
       b.tax_id_kind AS kind, b.tax_id, s.legal_name AS s_name, s.address AS s_address, s.tax_id AS s_tax_id,
       s.unique_amount_codes AS s_codes, b.id AS terms, b.discount_percent AS discount,
       b.custom_prices AS prices
FROM {users} u
LEFT JOIN {buyers} b ON b.account_id = u.id
LEFT JOIN {sellers} s ON s.id = %s
WHERE u.id {ids}
ORDER BY u.id{lock}
"""


def locked_parties(account: AbstractBaseUser) -> Parties:
    """Lock the account's row (ledger.lock; free when the caller holds it) and read the seller's profile,
    the account's billing details (billing.buyer) and its billing terms, in one statement (asked for every
    order)."""
    return locked_parties_of([account.pk])[account.pk]


def locked_parties_of(account_ids: list[int]) -> dict[int, Parties]:
    """`locked_parties` of many accounts in one statement (a billing run's batch), by account id."""
    ids, id_params = prepared_statements.any_of(account_ids)
    sql = _PARTIES.format(
        users=get_user_model()._meta.db_table,
        buyers=BillingProfile._meta.db_table,
        sellers=SellerProfile._meta.db_table,
        ids=ids,
        # ledger.lock's lock, in id order; the demo's SQLite has no row locks (its writers take turns).
        lock=" FOR NO KEY UPDATE OF u" if connection.features.has_select_for_no_key_update else "",
    )
    with connection.cursor() as cursor:
        prepared_statements.execute(cursor, sql, [SellerProfile.SINGLETON_PK, *id_params])
        names = [column[0] for column in cursor.description]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    rule = tax.current_rule()
    company = getattr(settings, "BILLING_COMPANY_NAME", "")
    return {row["id"]: _parties_of(row, rule, company) for row in found}


def _parties_of(row: dict, rule: tax.TaxRule, company: str) -> Parties:
    terms = None
    if row["terms"] is not None:
        prices = row["prices"]
        terms = BillingProfile(
            pk=row["terms"],
            account_id=row["id"],
            discount_percent=Decimal(str(row["discount"])),  # a number on the demo's SQLite
            custom_prices=json.loads(prices) if isinstance(prices, str) else prices,
        )
    full_name = f"{row['first_name']} {row['last_name']}".strip()
    return Parties(
        seller_name=row["s_name"] or company,
        seller_address=row["s_address"] or "",
        seller_tax_id=row["s_tax_id"] or "",
        unique_amount_codes=bool(row["s_codes"]),
        buyer_name=row["company"] or full_name or row["email"],
        buyer_address=row["address"] or "",
        buyer_tax_id_kind=(row["kind"] or "") if row["tax_id"] else "",
        buyer_tax_id=row["tax_id"] or "",
        rule=rule,
        terms=terms,
    )
