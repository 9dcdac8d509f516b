"""The one lock order, and the helper that takes locks in it.

A transaction that locks more than one kind of row takes them in this order, and never goes back:

1. the customer: their user row, FOR NO KEY UPDATE (quotas, credit, billing terms; billing's ledger locks
   the same row),
2. the server: its row, by the compare-and-swap that starts an action (moving an additional address
   between two of a customer's servers locks both rows, in id order: `panel.servers.addresses`),
3. the host: its row, by a claim (`hypervisor.claims`), one host at a time, or by a release or a failed
   resize's give-back (the allocation trigger updates the host's usage counters),
4. the address: a free address, taken without waiting (SKIP LOCKED, `hypervisor.ipam`),
5. the invoice numbering: billing's sequence row for the year, the one lock every order shares, taken
   a few statements before the commit,
6. the servers' firewall rows, in server order, when their addresses changed (`LockOrder.firewalls`,
   which raises the versions of their network filters: `panel.servers.filter_sync.addresses_changed`):
   nothing else is locked after them, and a firewall change on its own locks only its row.

Two transactions that both follow it can wait for each other only in one direction, so they never
deadlock; and the contended locks (a host, the numbering) are held for the shortest time. Taking a lock
the transaction already holds is free (Postgres row locks are re-entrant within a transaction).

`LockOrder` is used by every path that takes more than one of them: an order, a resize, a rebuild
that claims again what a failed create gave back, and any action whose preparation locks the customer.
It refuses to take a lock out of order (a programming error, raised at once in tests), which is how the
order stays true as the code changes.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum

from django.db import connection, transaction

import prepared_statements
from billing import addons, subscriptions
from billing.models import Plan
from hypervisor import claims, ipam
from hypervisor.models import Allocation, Host, Image, IPAddress, Region
from hypervisor.placement import Resources
from panel.accounts.models import Quota, User
from panel.raw_rows import Columns
from panel.servers import filter_sync


class Lock(IntEnum):
    CUSTOMER = 1
    SERVER = 2
    HOST = 3
    ADDRESS = 4
    INVOICE_NUMBER = 5
    FIREWALL = 6


class LockOrderError(RuntimeError):
    """A lock was asked for after a lock that comes later in the order."""


@dataclass(frozen=True)
class OrderRows:
    """The locked customer (with their quota) and an order's catalogue rows as they are now."""

    customer: User
    plan: Plan | None
    image: Image | None
    region: Region | None


# The catalogue rows an order names by slug, and their table aliases in the customer's lock statement.
_CATALOGUE = {"plan": (Plan, "p"), "image": (Image, "i"), "region": (Region, "r")}


@functools.cache
def _columns(model, alias: str) -> Columns:
    return Columns(model, alias)


def _lock_customer(user_id: int, slugs: dict[str, str | None] | None = None) -> tuple[User, dict]:
    """One statement (hand-written: every order asks it): the customer's row FOR NO KEY UPDATE with their
    quota row, and the catalogue rows named in `slugs` (kind: slug; a None slug joins nothing).

    FOR NO KEY UPDATE: it serialises with every other customer lock (billing's ledger lock too), but not
    with the key-share lock that a foreign key check takes when another transaction commits a row that
    points at this customer (an operation, an activity event) after swapping a server's task. A full FOR
    UPDATE would make that commit wait for this transaction, which may be waiting for the same server row:
    a deadlock. Only the customer's row is locked (OF u), not the quota or catalogue rows."""
    quote = connection.ops.quote_name
    user, quota = _columns(User, "u"), _columns(Quota, "q")
    selected, joins, params = [user.sql, quota.sql], [], []
    wanted = [(kind, slug) for kind, slug in (slugs or {}).items() if slug is not None]
    for kind, slug in wanted:
        model, alias = _CATALOGUE[kind]
        selected.append(_columns(model, alias).sql)
        slug_column = quote(model._meta.get_field("slug").column)
        joins.append(f"LEFT JOIN {quote(model._meta.db_table)} {alias} ON {alias}.{slug_column} = %s")
        params.append(slug)
    user_pk, quota_user = quote(User._meta.pk.column), quote(Quota._meta.get_field("user").column)
    features = connection.features  # the embedded demo's SQLite has no row locks (its writers take turns)
    lock = " FOR NO KEY UPDATE OF u" if features.has_select_for_no_key_update else ""
    sql = (
        f"SELECT {', '.join(selected)} FROM {quote(User._meta.db_table)} u "  # noqa: S608 (names from models)
        f"LEFT JOIN {quote(Quota._meta.db_table)} q ON q.{quota_user} = u.{user_pk} "
        f"{' '.join(joins)} WHERE u.{user_pk} = %s{lock}"
    )
    with connection.cursor() as cursor:
        prepared_statements.execute(cursor, sql, [*params, user_id])  # prepared once per database session
        row = cursor.fetchone()
    if row is None:
        raise User.DoesNotExist(f"no user {user_id}")
    customer = user.build(row)
    own_quota = quota.build(row, user.width)
    User.quota.related.set_cached_value(customer, own_quota)  # None: no quota row (the defaults apply)
    if own_quota is not None:
        Quota.user.field.set_cached_value(own_quota, customer)
    catalogue: dict = dict.fromkeys(slugs or {})
    start = user.width + quota.width
    for kind, _slug in wanted:
        columns = _columns(*_CATALOGUE[kind])
        catalogue[kind] = columns.build(row, start)
        start += columns.width
    return customer, catalogue


class LockOrder:
    """The locks one transaction takes, in the one order. Use inside `transaction.atomic()`."""

    def __init__(self) -> None:
        self.taken: set[Lock] = set()
        self._customer: User | None = None

    def _take(self, lock: Lock) -> None:
        if not transaction.get_connection().in_atomic_block:
            raise LockOrderError(f"the {lock.name.lower()} lock needs a transaction")
        if lock in self.taken:
            return  # held already: taking it again waits for nobody
        later = [held for held in self.taken if held > lock]
        if later:
            raise LockOrderError(
                f"the {lock.name.lower()} lock is taken after the {max(later).name.lower()} lock"
            )
        self.taken.add(lock)

    def customer(self, user_id: int) -> User:
        """Lock the customer's row, read with their quota (their orders, quotas and credit are counted one
        at a time). Asked again, it answers the row it holds without a query."""
        if self._customer is not None:
            if self._customer.pk != user_id:
                raise LockOrderError("one transaction locks one customer")
            return self._customer
        self._take(Lock.CUSTOMER)
        self._customer = _lock_customer(user_id)[0]
        return self._customer

    def customer_for_order(self, user_id: int, plan: str, image: str | None, region: str) -> OrderRows:
        """Lock the customer's row (as `customer`) and read, in the same statement, the plan, image and
        region an order names by slug as they are now (None where there is no such row; no image asked
        for when `image` is None). The order checks what it sells against these rows, not against what its
        request was validated with."""
        if self._customer is not None:
            raise LockOrderError("the customer is locked already")
        self._take(Lock.CUSTOMER)
        customer, catalogue = _lock_customer(user_id, {"plan": plan, "image": image, "region": region})
        self._customer = customer
        return OrderRows(customer, catalogue["plan"], catalogue["image"], catalogue["region"])

    def server(self) -> None:
        """Mark the server row as locked: the caller's compare-and-swap UPDATE on it comes next."""
        self._take(Lock.SERVER)

    def claim(self, consumer_uuid: uuid.UUID, region: Region, need: Resources) -> Host:
        """Claim capacity on a host of the region (its row is locked while the claim is counted)."""
        self._take(Lock.HOST)
        return claims.claim(consumer_uuid, region, need)

    def claim_target(
        self,
        consumer_uuid: uuid.UUID,
        region: Region,
        need: Resources,
        *,
        host: Host | None,
        exclude_host_id: int,
    ) -> Host:
        """Claim capacity for a server that moves: on `host`, or on the best other host of the region than
        the one it is on (`exclude_host_id`); it holds both claims until the switch-over or a rollback."""
        self._take(Lock.HOST)
        return claims.claim_target(consumer_uuid, region, need, host=host, exclude_host_id=exclude_host_id)

    def resize_claim(self, consumer_uuid: uuid.UUID, need: Resources) -> Allocation:
        """Change the consumer's claim on its host to `need`."""
        self._take(Lock.HOST)
        return claims.resize_claim(consumer_uuid, need)

    def addresses(self, region: Region, consumer_uuid: uuid.UUID) -> list[IPAddress]:
        """Take the consumer's primary addresses from the region's pools: an IPv4 address where the region
        has IPv4 pools and an IPv6 address or /64 where it has IPv6 pools (never waits for another's).
        Raises ipam.NoAddress when a family the region offers has none free."""
        self._take(Lock.ADDRESS)
        return ipam.allocate_primaries_if_pooled(region, consumer_uuid)

    def ipv6_address(self, region: Region, consumer_uuid: uuid.UUID) -> IPAddress | None:
        """Take an IPv6 address or /64 where the region has IPv6 pools (a server made before they existed)."""
        self._take(Lock.ADDRESS)
        return ipam.allocate_ipv6_if_pooled(region, consumer_uuid)

    def additional_address(self, region: Region, consumer_uuid: uuid.UUID) -> IPAddress:
        """Take one more IPv4 address of the region for the consumer (ipam.NoAddress when none is free)."""
        self._take(Lock.ADDRESS)
        return ipam.allocate_additional(region, consumer_uuid)

    def start_addon(
        self, reference: str, kind: str, key: str, label: str, price: Decimal | None = None
    ) -> None:
        """Bill an add-on of the server's subscription from now (its first charge takes an invoice number),
        at the kind's price or at `price` when given (backups: a share of the plan's price)."""
        self._take(Lock.INVOICE_NUMBER)
        addons.start_addon(reference, kind, key, label, price=price)

    def reprice_addon(self, reference: str, key: str, price: Decimal) -> None:
        """The server's add-on goes on at another price from now (backups after a plan change); a higher
        one invoices the difference, which takes an invoice number."""
        self._take(Lock.INVOICE_NUMBER)
        addons.reprice_addon(reference, key, price)

    def end_addon(self, reference: str, key: str) -> None:
        self._take(Lock.INVOICE_NUMBER)
        addons.end_addon(reference, key)

    def move_addon(self, from_reference: str, to_reference: str, key: str, label: str) -> None:
        self._take(Lock.INVOICE_NUMBER)
        addons.move_addon(from_reference, to_reference, key, label)

    def open_subscription(self, account: User, plan: Plan, reference: str, label: str) -> None:
        """Start the subscription of a new server (its first invoice takes a number)."""
        self._take(Lock.INVOICE_NUMBER)
        subscriptions.open_subscription(account, plan, reference, label)

    def change_plan(self, reference: str, plan: Plan, quoted: Decimal | None = None) -> dict:
        """Move the subscription to another plan (an upgrade's invoice takes a number), charging the
        `quoted` amount the customer was shown when given."""
        self._take(Lock.INVOICE_NUMBER)
        return subscriptions.change_plan(reference, plan, quoted=quoted)

    def firewalls(self, server_ids: Iterable) -> None:
        """The servers' addresses changed: lock their firewall rows (in server order) and raise the versions
        of their network filters; the apply tasks are sent after the commit."""
        self._take(Lock.FIREWALL)
        filter_sync.addresses_changed(server_ids)
