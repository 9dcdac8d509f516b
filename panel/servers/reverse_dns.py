"""Reverse DNS of a server's addresses: the customer sets or clears the PTR name of one of them (page and
API), and workers publish it to PowerDNS when one is configured (hypervisor.reverse_dns, hypervisor.powerdns).

`set_reverse_dns` records the name in one transaction with its activity-log line and sends the push task
after the commit; `push_after_commit` does the same for addresses a service released (their records are
withdrawn at once rather than by the next sync); the periodic `sync` pushes what is still pending (a lost
task, a released address whose record must go) and tries failed pushes again after a few minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from functools import partial

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hypervisor import powerdns
from hypervisor import reverse_dns as ptr_records
from hypervisor.models import IPAddress
from panel import dispatch
from panel.activity import log as activity
from panel.models import ActivityEvent, Server, User
from panel.servers.actions import Conflict

log = logging.getLogger(__name__)

PUBLISHED = "published"
PENDING = "pending"
FAILED = "failed"
NOT_CONFIGURED = "not_configured"

# The sync job (every minute) stops starting pushes after this many seconds; the rest wait for its next run.
SYNC_SECONDS = 45


def set_reverse_dns(server: Server, ip: str, name: str, actor: User | None) -> IPAddress:
    """Set (or clear, with an empty name) the PTR name of one of the server's addresses. The caller has
    checked that the actor may act on the server. ValidationError with the field (`ip` or `name`) for an
    address the server does not have or a name that is not a hostname; Conflict for a deleted server."""
    if server.status == Server.Status.DELETED:
        raise Conflict(_("This server has been deleted."))
    errors = {}
    try:
        address = ptr_records.normalise_address(ip)
    except ValidationError as exc:
        errors["ip"] = exc.messages
    try:
        name = ptr_records.validate_name(name)
    except ValidationError as exc:
        errors["name"] = exc.messages
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        try:
            row = ptr_records.set_ptr(server.id, address, name)
        except IPAddress.DoesNotExist:
            raise ValidationError(
                {"ip": [_("%(ip)s is not an address of this server.") % {"ip": address}]}
            ) from None
        activity.record(
            ActivityEvent.Type.REVERSE_DNS,
            summary=(
                gettext_noop("Reverse DNS of %(ip)s on server %(name)s set to %(ptr)s.")
                if name
                else gettext_noop("Reverse DNS of %(ip)s on server %(name)s cleared.")
            ),
            data={"ip": address, "name": server.name, "ptr": name},
            account=server.owner if server.owner_id else None,
            actor=actor,
            target=f"server:{server.id}",
            staff_action=bool(actor is not None and actor.is_panel_staff and actor.pk != server.owner_id),
        )
        if row.ptr_state == IPAddress.PtrState.PENDING:
            transaction.on_commit(lambda: _send_push(row.pk))
    server.forget_addresses()
    return row


def _send_push(address_id: int) -> None:
    """Send the push now; a broker that fails is logged, not raised: the row is pending, and the periodic
    sync pushes it within a minute."""
    try:
        dispatch.send(dispatch.PUSH_REVERSE_DNS, [address_id])
    except Exception:
        log.exception("could not send the reverse DNS push of address %s; the sync will push it", address_id)


def push_after_commit(address_ids: Iterable[int]) -> None:
    """In the caller's transaction (anywhere in it): once it commits, send the push task for each of these
    addresses whose PTR record is then pending, such as the named ones `hypervisor.ipam.release` or
    `release_one` just released, so that their records are withdrawn now rather than by the next sync.
    Nothing when PowerDNS is not configured; outside a transaction, at once. A failure to send is logged:
    the rows stay pending and the sync pushes them."""
    ids = sorted({int(address_id) for address_id in address_ids})
    if ids and powerdns.is_configured():
        transaction.on_commit(partial(_push_pending, ids))


def _push_pending(address_ids: list[int]) -> None:
    try:
        due = list(
            IPAddress.objects.filter(pk__in=address_ids, ptr_state=IPAddress.PtrState.PENDING).values_list(
                "pk", flat=True
            )
        )
    except Exception:
        log.exception("could not read which reverse DNS records to push; the sync will push them")
        return
    for address_id in due:
        _send_push(address_id)


def dns_status(address: IPAddress) -> str:
    """Where the address's PTR name stands in DNS: published (DNS says what the panel says, also "no
    record" for an address without a name), pending, failed, or not_configured (no PowerDNS)."""
    if not powerdns.is_configured():
        return NOT_CONFIGURED
    state = address.ptr_state
    if state == IPAddress.PtrState.PUSHED:
        return PUBLISHED
    if state == IPAddress.PtrState.FAILED:
        return FAILED
    if state == IPAddress.PtrState.PENDING or address.ptr:
        return PENDING
    return PUBLISHED


def push(address_id: int) -> str | None:
    """A worker publishes or withdraws one address's record (hypervisor.reverse_dns.push)."""
    return ptr_records.push(address_id)


def sync() -> int:
    """The periodic job: push every address that is due (pending, failed a while ago, or named before
    PowerDNS was configured), within SYNC_SECONDS so that runs do not pile up; nothing while PowerDNS does
    not answer (asked once). Answers how many were pushed."""
    due = ptr_records.pending()
    if not due:
        return 0
    try:
        powerdns.zones()
    except powerdns.PowerDNSError as exc:
        log.warning("reverse DNS sync skipped: %s", exc)
        return 0
    deadline = time.monotonic() + SYNC_SECONDS
    done = 0
    for address_id in due:
        if time.monotonic() > deadline:
            break
        try:
            if ptr_records.push(address_id) == IPAddress.PtrState.PUSHED:
                done += 1
        except Exception:
            log.exception("reverse DNS push of address %s failed", address_id)
    return done
