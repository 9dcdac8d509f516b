"""Additional IPv4 addresses: a customer adds one to a server (counted by the `extra_ipv4` quota, taken
from the region's pools, billed per month as an add-on of the server's subscription), removes it, or moves
it to another of their servers in the same region (a floating address).

Each change is one transaction in the lock order of panel.servers.locks (customer, server rows, address,
invoice numbering, firewall rows), and raises the version of the servers' network filters
(`LockOrder.firewalls`), so that a worker lets the guest send from the address on its new server and no
longer on its old one. The guest configures the address itself (`guest_instructions`); a rebuild writes it
into cloud-init.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from billing import addons
from billing import errors as billing_errors
from hypervisor import ipam
from hypervisor.models import IPAddress
from panel.accounts import quotas
from panel.activity import log as activity
from panel.models import ActivityEvent, Server, User
from panel.servers import reverse_dns
from panel.servers.actions import Conflict, InsufficientCredit, OutOfAddresses, OverQuota, Unprocessable
from panel.servers.locks import LockOrder
from panel.servers.states import Status, Task

ADDON_KIND = "ipv4"

# A server can take, give up or receive an address in these states (not while it is being deleted, and
# not while billing or staff hold it suspended).
CHANGEABLE = (Status.PENDING, Status.PROVISIONING, Status.RUNNING, Status.STOPPED, Status.ERROR)


def can_change(server: Server) -> bool:
    """Whether the server may take, give up or receive an address now."""
    return server.status in CHANGEABLE and server.task != Task.DELETE


class NotHeld(Unprocessable):
    code = "unknown_address"


def addon_label(address: str, server_name: str) -> str:
    """What the invoice line names (billing words it in the reader's language around this)."""
    return f"{address} ({server_name})"


def _lock_servers(locks: LockOrder, *server_ids) -> dict:
    """Lock the servers' rows (in id order, so two moves never wait on each other the other way round) and
    check each may change its addresses now."""
    locks.server()
    rows = {
        row.pk: row
        for row in Server.objects.select_for_update(no_key=True)
        .select_related("region")
        .filter(pk__in=server_ids)
        .order_by("pk")
    }
    for row in rows.values():
        if not can_change(row):
            raise Conflict(
                _("The addresses of a server that is %(status)s cannot change.")
                % {"status": row.get_status_display().lower()}
            )
    return rows


def _log(server: Server, actor: User | None, summary: str, data: dict) -> None:
    activity.record(
        ActivityEvent.Type.ADDRESS_CHANGED,
        summary=summary,
        data={"name": server.name, **data},
        account=server.owner,
        actor=actor,
        target=f"server:{server.id}",
        staff_action=bool(actor is not None and actor.is_panel_staff and actor.pk != server.owner_id),
    )


def add_address(server: Server, actor: User | None) -> IPAddress:
    """Give the server one more IPv4 address of its region and bill it from now."""
    with transaction.atomic():
        locks = LockOrder()
        customer = locks.customer(server.owner_id)
        try:
            quotas.check(customer, {"extra_ipv4": 1})
        except quotas.QuotaExceeded as exc:
            raise OverQuota(exc.message) from exc
        if settings.BILLING_ORDER_POLICY == "prepaid":
            try:
                addons.require_addon_credit(customer, ADDON_KIND, reference=str(server.pk))
            except billing_errors.InsufficientCredit as exc:
                raise InsufficientCredit(exc.message) from exc
        current = _lock_servers(locks, server.pk)[server.pk]
        try:
            address = locks.additional_address(current.region, current.id)
        except ipam.NoAddress as exc:
            raise OutOfAddresses(
                _("No IPv4 address is free in %(region)s; please try again later.")
                % {"region": current.region.name}
            ) from exc
        locks.start_addon(
            str(current.id), ADDON_KIND, address.address, addon_label(address.address, current.name)
        )
        locks.firewalls([current.id])
        _log(
            current,
            actor,
            gettext_noop("Added the IPv4 address %(address)s to server %(name)s."),
            {"address": address.address},
        )
    server.forget_addresses()
    return address


def _held(server: Server, text: str) -> IPAddress:
    """One of the server's additional addresses, by its text (any spelling of the address)."""
    try:
        normalised = str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise NotHeld(_("“%(address)s” is not an IP address.") % {"address": text}) from None
    row = IPAddress.objects.filter(consumer_uuid=server.id, address=normalised).first()
    if row is None:
        raise NotHeld(_("The server has no address %(address)s.") % {"address": normalised})
    if row.role != IPAddress.Role.ADDITIONAL:
        raise Conflict(_("The server's primary address cannot be removed or moved; only additional ones."))
    return row


def remove_address(server: Server, address: str, actor: User | None) -> None:
    """Give an additional address back to the pool (after the cool-down another server may get it) and stop
    billing it."""
    with transaction.atomic():
        locks = LockOrder()
        locks.customer(server.owner_id)
        current = _lock_servers(locks, server.pk)[server.pk]
        row = _held(current, address)
        try:
            released = ipam.release_one(current.id, row.address)
        except IPAddress.DoesNotExist:
            raise NotHeld(_("The server has no address %(address)s.") % {"address": row.address}) from None
        reverse_dns.push_after_commit([released.pk])  # its PTR record, if any, is withdrawn at once
        locks.end_addon(str(current.id), row.address)
        locks.firewalls([current.id])
        _log(
            current,
            actor,
            gettext_noop("Removed the IPv4 address %(address)s from server %(name)s."),
            {"address": row.address},
        )
    server.forget_addresses()


def move_address(server: Server, address: str, target: Server, actor: User | None) -> IPAddress:
    """Move an additional address to another of the owner's servers in the same region; it keeps its
    reverse DNS name, and its billing follows it."""
    if target.pk == server.pk:
        raise Unprocessable(_("Choose another server to move the address to."))
    with transaction.atomic():
        locks = LockOrder()
        locks.customer(server.owner_id)
        rows = _lock_servers(locks, server.pk, target.pk)
        current, other = rows[server.pk], rows.get(target.pk)
        if other is None or other.owner_id != current.owner_id:
            raise NotHeld(_("Unknown server."))
        if other.region_id != current.region_id:
            raise Unprocessable(
                _("An address can move only to a server in the same region (%(region)s).")
                % {"region": current.region.name}
            )
        row = _held(current, address)
        try:
            moved = ipam.move(row.address, current.id, other.id)
        except IPAddress.DoesNotExist:
            raise NotHeld(_("The server has no address %(address)s.") % {"address": row.address}) from None
        locks.move_addon(str(current.id), str(other.id), row.address, addon_label(row.address, other.name))
        locks.firewalls([current.id, other.id])
        _log(
            current,
            actor,
            gettext_noop("Moved the IPv4 address %(address)s from server %(name)s to server %(target)s."),
            {"address": row.address, "target": other.name},
        )
    server.forget_addresses()
    target.forget_addresses()
    return moved


def guest_instructions(address: IPAddress) -> dict[str, str]:
    """How to configure an additional address inside the guest: for now (`ip`) and for good (netplan, or
    Debian's /etc/network/interfaces)."""
    prefix = ipaddress.ip_network(address.pool.cidr).prefixlen
    return {
        "ip": f"ip address add {address.address}/{prefix} dev eth0",
        "netplan": (
            "# /etc/netplan/60-additional-address.yaml, then: netplan apply\n"
            "network:\n  version: 2\n  ethernets:\n    eth0:\n"
            f"      addresses: [{address.address}/{prefix}]\n"
        ),
        "interfaces": (
            "# /etc/network/interfaces.d/additional-address, then: ifup eth0:1\n"
            f"auto eth0:1\niface eth0:1 inet static\n    address {address.address}/{prefix}\n"
        ),
    }
