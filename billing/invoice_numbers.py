"""Invoice numbers taken at the end of the issuing transaction. Invoices are written without a number
(billing.invoices.issue) and gathered in `Numbers`; `Numbers.take`, the transaction's last statement,
takes the year's next numbers for all of them at once from the sequence row (billing.numbering) and writes
them on the invoices and on their charges' ledger reasons ("Invoice INV-2026-000001"), in one statement on
Postgres. The sequence row is locked only from that statement to the commit: a billing run's batch of
accounts renews and settles them all first, so issuers side by side wait for each other only that long.

Numbers stay gapless and unique: they are taken and written in the transaction that issues the invoices,
which commits with them or not at all; nobody else ever sees an invoice without its number. The invoices
of one call are numbered in the order they were issued."""

from __future__ import annotations

from collections import defaultdict

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_noop

from . import numbering, transfer
from .models import Invoice, InvoiceSequence, LedgerEntry
from .texts import Message

PREFIX = "INV"
# The reason of an invoice's charge on the ledger.
CHARGE_REASON = gettext_noop("Invoice %(number)s")
_SENTINEL = "\x00number\x00"

# One statement: the year's next `count` numbers from its sequence row (locked from here to the commit), in
# the order of `ids`, written on the invoices and on their charges' reasons. No row when the year has no
# sequence row yet.
_NUMBER = """
WITH taken AS (
    UPDATE {sequence} SET last = last + %(count)s WHERE year = %(year)s RETURNING last
), numbered AS (
    SELECT v.id, %(prefix)s || lpad(n.n::text, greatest(6, length(n.n::text)), '0') AS number
    FROM taken, unnest(%(ids)s::bigint[]) WITH ORDINALITY AS v(id, ordinal),
         LATERAL (SELECT taken.last - %(count)s + v.ordinal AS n) AS n
), invoices AS (
    UPDATE {invoice} i SET number = numbered.number FROM numbered WHERE i.id = numbered.id
), charges AS (
    UPDATE {ledger} e
    SET reason = left(%(before)s || numbered.number || %(after)s, 255),
        reason_data = jsonb_set(e.reason_data, '{{values,number}}', to_jsonb(numbered.number))
    FROM numbered WHERE e.invoice_id = numbered.id AND e.kind = %(charge)s
)
SELECT last FROM taken
"""


def charge_reason(number: str | None) -> Message:
    return Message(CHARGE_REASON, {"number": number})


class Numbers:
    """The invoices a transaction issues, numbered together by `take` as its last statement."""

    def __init__(self) -> None:
        self.invoices: list[Invoice] = []
        self.codes = False

    def add(self, invoices: list[Invoice], *, codes: bool = False) -> None:
        """Invoices written without a number; `codes`: they get unique amount codes (billing.transfer)."""
        self.invoices += invoices
        self.codes = self.codes or codes

    def take(self) -> None:
        """Number the invoices gathered (each year of issue from its own sequence), in the order they were
        added; then give them their unique amount codes under the sequence's lock, so that two issuers
        never pick the same amount. Call it last before the commit: the sequence row stays locked."""
        if not self.invoices:
            return
        by_year: dict[int, list[Invoice]] = defaultdict(list)
        for invoice in self.invoices:
            by_year[timezone.localtime(invoice.issued_at).year].append(invoice)
        for year, invoices in sorted(by_year.items()):
            if connection.vendor == "postgresql":
                _number_in_one_statement(year, invoices)
            else:
                _number_step_by_step(year, invoices)
        if self.codes:
            transfer.assign_codes(self.invoices)
            Invoice.objects.bulk_update(self.invoices, ["unique_code"])
        self.invoices = []


def _number_in_one_statement(year: int, invoices: list[Invoice]) -> None:
    before, after = charge_reason(_SENTINEL).english().split(_SENTINEL)
    sql = _NUMBER.format(
        sequence=InvoiceSequence._meta.db_table,
        invoice=Invoice._meta.db_table,
        ledger=LedgerEntry._meta.db_table,
    )
    params = {
        "count": len(invoices),
        "year": year,
        "prefix": f"{PREFIX}-{year}-",
        "ids": [invoice.pk for invoice in invoices],
        "before": before,
        "after": after,
        "charge": LedgerEntry.Kind.CHARGE,
    }
    last = numbering.on_year_row(InvoiceSequence, year, sql, params)[0]
    first = last - len(invoices) + 1
    for offset, invoice in enumerate(invoices):
        invoice.number = f"{PREFIX}-{year}-{first + offset:06d}"


def _number_step_by_step(year: int, invoices: list[Invoice]) -> None:
    """The demo's SQLite: the numbers, then the invoices and their charges in bulk."""
    numbers = numbering.take(InvoiceSequence, PREFIX, year, len(invoices))
    for invoice, number in zip(invoices, numbers, strict=True):
        invoice.number = number
    Invoice.objects.bulk_update(invoices, ["number"])
    by_invoice = {invoice.pk: invoice for invoice in invoices}
    charges = list(LedgerEntry.objects.filter(invoice__in=invoices, kind=LedgerEntry.Kind.CHARGE))
    for charge in charges:
        reason = charge_reason(by_invoice[charge.invoice_id].number)
        charge.reason, charge.reason_data = reason.english()[:255], reason.data()
    LedgerEntry.objects.bulk_update(charges, ["reason", "reason_data"])
