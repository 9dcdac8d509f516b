"""The one lock order, and the helper that takes locks in it.

A transaction that locks more than one kind of row takes them in this order, and never goes back:

1. the customer: their user row, FOR NO KEY UPDATE (quotas, credit, billing terms; billing's ledger locks
   the same row),
2. the server: its row, by the compare-and-swap that starts an action (moving an additional address
   between two of a customer's servers locks both rows, in id order: `panel.servers.addresses`),
3. the host: its row, by a claim (`hypervisor.claims`), one host at a time,
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

import uuid
from collections.abc import Iterable
from decimal import Decimal
from enum import IntEnum

from django.db import transaction

from billing import addons, subscriptions
from billing.models import Plan
from hypervisor import claims, ipam
from hypervisor.models import Allocation, Host, IPAddress, Region
from hypervisor.placement import Resources
from panel.accounts.models import User
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
        # FOR NO KEY UPDATE: it serialises with every other customer lock (billing's ledger lock too), but not
        # with the key-share lock that a foreign key check takes when another transaction commits a row that
        # points at this customer (an operation, an activity event) after swapping a server's task. A full
        # FOR UPDATE would make that commit wait for this transaction, which may be waiting for the same
        # server row: a deadlock.
        self._customer = (
            User.objects.select_for_update(no_key=True, of=("self",)).select_related("quota").get(pk=user_id)
        )
        return self._customer

    def server(self) -> None:
        """Mark the server row as locked: the caller's compare-and-swap UPDATE on it comes next."""
        self._take(Lock.SERVER)

    def claim(self, consumer_uuid: uuid.UUID, region: Region, need: Resources) -> Host:
        """Claim capacity on a host of the region (its row is locked while the claim is counted)."""
        self._take(Lock.HOST)
        return claims.claim(consumer_uuid, region, need)

    def resize_claim(self, consumer_uuid: uuid.UUID, need: Resources) -> Allocation:
        """Change the consumer's claim on its host to `need`."""
        self._take(Lock.HOST)
        return claims.resize_claim(consumer_uuid, need)

    def addresses(self, region: Region, consumer_uuid: uuid.UUID) -> list[IPAddress]:
        """Take the consumer's primary addresses from the region's pools: an IPv4 address where the region
        has IPv4 pools and an IPv6 address or /64 where it has IPv6 pools (never waits for another's).
        Raises ipam.NoAddress when a family the region offers has none free."""
        self._take(Lock.ADDRESS)
        taken = [
            ipam.allocate_if_pooled(region, consumer_uuid),
            ipam.allocate_ipv6_if_pooled(region, consumer_uuid),
        ]
        return [address for address in taken if address is not None]

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
