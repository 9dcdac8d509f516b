"""Reverse DNS names (PTR) of pool addresses: setting a consumer's name, and publishing it to PowerDNS.

The row is the truth. `set_ptr` writes the name and, when PowerDNS is configured, marks the row `pending`
with a new `ptr_changed_at`; a worker's `push` then publishes the name (or withdraws the record when the
name is empty or the address is no longer held) and records `pushed` or `failed` only if `ptr_changed_at`
is still the one it read: a push that raced a newer change never marks it done, and the newer change's
own push (or the periodic sync's, `pending`) publishes it. Pushes of one address take turns (a Postgres
session-level advisory lock, held across the HTTP calls without a transaction open; only the recording is
a short transaction), so an older push can never land at PowerDNS after a newer one. Releasing an address
(`hypervisor.ipam`) clears its name and marks it pending when it had one, so the sync withdraws the record.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid as uuid_module
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from . import powerdns
from .models import IPAddress

log = logging.getLogger(__name__)

LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# A failed push is tried again by the periodic sync once its change is this old (not at once: the push sent
# after the change has just failed).
FAILED_RETRY_AFTER = timedelta(minutes=5)
# Pushes of one address take turns under this advisory lock (with the address's id). Other classes: 7301 a
# host's turn, 7302 creating IP pools (hypervisor.ipam), 7303 the firewall.
ADVISORY_LOCK_CLASS = 7304

State = IPAddress.PtrState


def validate_name(value: str | None) -> str:
    """A PTR name: a hostname of at least two labels (letters, digits and hyphens, 1 to 63 characters each,
    not starting or ending with a hyphen; 253 in all), lowercased, without its trailing dot. Empty: no name
    (the record is removed). ValidationError (code invalid_ptr) otherwise."""
    name = (value or "").strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return ""
    if len(name) > 253:
        raise ValidationError(_("A reverse DNS name has at most 253 characters."), code="invalid_ptr")
    labels = name.split(".")
    for label in labels:
        if not LABEL.match(label):
            raise ValidationError(
                _(
                    "“%(label)s” is not a valid hostname label: use letters, digits and hyphens (1 to 63 "
                    "characters), not starting or ending with a hyphen."
                ),
                params={"label": label[:70]},
                code="invalid_ptr",
            )
    if len(labels) < 2:
        raise ValidationError(
            _("A reverse DNS name is a full hostname, like mail.example.com."), code="invalid_ptr"
        )
    if labels[-1].isdigit():
        raise ValidationError(_("A hostname cannot end in a numeric label."), code="invalid_ptr")
    return name


def normalise_address(value: str | None) -> str:
    """An IPv4 or IPv6 address in its canonical text (IPv6 compressed and lowercased); ValidationError
    (code invalid_ip) when it is neither."""
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        raise ValidationError(
            _("“%(ip)s” is not an IPv4 or IPv6 address."),
            params={"ip": (value or "")[:60]},
            code="invalid_ip",
        ) from None


def set_ptr(consumer_uuid: uuid_module.UUID, address: str, name: str) -> IPAddress:
    """Set (or clear, with "") the PTR name of an address the consumer holds; one conditional UPDATE. When
    PowerDNS is configured the row becomes `pending` for a worker's `push`. Raises ValidationError for a
    bad address or name, IPAddress.DoesNotExist when the consumer does not hold the address."""
    address = normalise_address(address)
    name = validate_name(name)
    state = State.PENDING if powerdns.is_configured() else State.NONE
    updated = IPAddress.objects.filter(consumer_uuid=consumer_uuid, address=address).update(
        ptr=name, ptr_state=state, ptr_error="", ptr_changed_at=timezone.now()
    )
    if not updated:
        raise IPAddress.DoesNotExist(f"{address} is not held by {consumer_uuid}")
    return IPAddress.objects.select_related("pool").get(address=address)


def _needs_push(row: dict) -> bool:
    if row["ptr_state"] in (State.PENDING, State.FAILED):
        return True
    # A name set while PowerDNS was not configured yet.
    return row["ptr_state"] == State.NONE and bool(row["ptr"]) and row["consumer_uuid"] is not None


@contextmanager
def _turn(address_id: int) -> Iterator[None]:
    """Wait for any other push of this address to finish, and hold the turn until the block ends: a
    session-level advisory lock, so that no transaction stays open while PowerDNS is asked (up to two HTTP
    calls). Released in any case; when releasing fails the connection is closed, which releases it too (a
    worker's connection outlives its task). SQLite (the demo) has no advisory locks: no turns there."""
    if connection.vendor != "postgresql":
        yield
        return
    key = [ADVISORY_LOCK_CLASS, int(address_id) % 2**31]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        except DatabaseError:
            log.exception(
                "could not release the reverse DNS turn of address %s; closing the connection", key[1]
            )
            connection.close()


def push(address_id: int) -> str | None:
    """Publish the address's PTR name to PowerDNS, or withdraw its record when it has no name or no holder;
    record `pushed`, or `failed` with the reason in ptr_error, unless the row changed meanwhile. Answers the
    state recorded (None: nothing to do, or PowerDNS is not configured). Call it outside a transaction (as a
    worker does): only the recording is one."""
    if not powerdns.is_configured():
        return None
    with _turn(address_id):
        row = (
            IPAddress.objects.filter(pk=address_id)
            .values("address", "ptr", "ptr_state", "ptr_changed_at", "consumer_uuid")
            .first()
        )
        if row is None or not _needs_push(row):
            return None
        try:
            if row["ptr"] and row["consumer_uuid"] is not None:
                powerdns.publish(row["address"], row["ptr"])
            else:
                powerdns.withdraw(row["address"])
        except powerdns.PowerDNSError as exc:
            state, error = State.FAILED, str(exc)
            log.warning("reverse DNS of %s not pushed: %s", row["address"], exc)
        else:
            state, error = State.PUSHED, ""
        # Compare and swap: recorded only if no newer change came while PowerDNS was asked.
        with transaction.atomic():
            recorded = IPAddress.objects.filter(pk=address_id, ptr_changed_at=row["ptr_changed_at"]).update(
                ptr_state=state, ptr_error=error
            )
        return state if recorded else None


def pending(limit: int = 500) -> list[int]:
    """Ids of the addresses whose PTR record the periodic sync should push: pending ones, failed ones whose
    change is a few minutes old, and names set before PowerDNS was configured; oldest change first."""
    if not powerdns.is_configured():
        return []
    retry_before = timezone.now() - FAILED_RETRY_AFTER
    due = (
        Q(ptr_state=State.PENDING)
        | Q(ptr_state=State.FAILED, ptr_changed_at__lt=retry_before)
        | Q(ptr_state=State.FAILED, ptr_changed_at__isnull=True)
        | (Q(ptr_state=State.NONE, consumer_uuid__isnull=False) & ~Q(ptr=""))
    )
    rows = IPAddress.objects.filter(due).order_by("ptr_changed_at", "pk").values_list("pk", flat=True)
    return list(rows[:limit])
