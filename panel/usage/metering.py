"""Metering: turn the hypervisor's cumulative counters into exact per-period traffic and usage samples,
and enforce each plan's transfer allowance.

Counters only grow while a domain runs; a restarted (or recreated) domain starts again from zero, which
shows as a new libvirt domain id or a counter smaller than the last reading. Then the new reading itself
is the traffic since the restart. Servers are read just before the panel stops them, so what they sent
before a stop is counted too.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection, transaction
from django.db.models import F
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from billing.models import OverLimitPolicy, TransferDirection
from billing.periods import add_months
from billing.texts import language_of
from hypervisor import routing, shaping
from hypervisor.connection import HypervisorError
from hypervisor.counters import Counters, collect
from hypervisor.models import Host
from panel import dispatch, mail
from panel.activity import log as activity
from panel.models import ActivityEvent, MeterState, Server, TransferPeriod, UsageSample
from panel.servers.actions import ActionError, suspend_server, unsuspend_server
from panel.servers.states import SuspendedBy
from panel.usage import host_readings
from panel.usage.host_readings import FIELDS, Deltas

log = logging.getLogger(__name__)
GIB = 1024**3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOTIFY_AT = (80, 90, 100)


# Periods follow each server's monthly anniversary.


def period_bounds(anchor: datetime, at: datetime) -> tuple[datetime, datetime]:
    """The monthly period around `at` that starts on the anchor's day of month (the 31st becomes the last
    day of shorter months)."""
    anchor = anchor.astimezone(timezone.get_current_timezone())
    at = at.astimezone(anchor.tzinfo)
    months = (at.year - anchor.year) * 12 + at.month - anchor.month
    start = add_months(anchor, months, anchor.day)
    if start > at:
        months -= 1
        start = add_months(anchor, months, anchor.day)
    return start, add_months(anchor, months + 1, anchor.day)


def current_period(server: Server, at: datetime | None = None) -> TransferPeriod:
    start, end = period_bounds(server.created_at, at or timezone.now())
    period, _created = TransferPeriod.objects.get_or_create(server=server, start=start, defaults={"end": end})
    return period


# Turning readings into deltas.


def _counter_values(counters: Counters) -> Deltas:
    return (counters.rx_bytes, counters.tx_bytes, counters.cpu_ns, counters.rd_bytes, counters.wr_bytes)


def _deltas_of(old_domain_id: int | None, old: Deltas | None, domain_id: int, new: Deltas) -> Deltas | None:
    """Exact increases (in FIELDS' order) since the last reading, or None for a server's first reading."""
    if old is None:
        return None
    if domain_id != old_domain_id or any(n < o for n, o in zip(new, old, strict=True)):
        return new  # counters began again from zero
    return tuple(n - o for n, o in zip(new, old, strict=True))


def _deltas(state: MeterState | None, counters: Counters) -> dict[str, int] | None:
    """Exact increases since the last reading, or None for the first reading of a server."""
    if state is None:
        return None
    old = tuple(getattr(state, field) for field in FIELDS)
    deltas = _deltas_of(state.domain_id, old, counters.domain_id, _counter_values(counters))
    return dict(zip(FIELDS, deltas, strict=True))


def counters_begin_again(server: Server) -> None:
    """The server's domain is a new one on another host (a migration's or an evacuation's switch-over): the
    next reading counts its counters from zero, whatever id that host gives it (the state takes a domain
    id no domain has). Call it in the switch-over's transaction."""
    MeterState.objects.filter(server=server).update(
        domain_id=-1, rx_bytes=0, tx_bytes=0, cpu_ns=0, rd_bytes=0, wr_bytes=0
    )


def _bucket(at: datetime) -> datetime:
    """The start of the 5-minute bucket holding `at` (exact: timedelta arithmetic, no float seconds)."""
    return at - (at - EPOCH) % timedelta(seconds=UsageSample.FIVE_MINUTES)


def record(server: Server, counters: Counters, now: datetime) -> dict[str, int] | None:
    """Store one reading of a server: deltas into its 5-minute sample and its transfer period."""
    with transaction.atomic():
        state = MeterState.objects.select_for_update().filter(server=server).first()
        deltas = _deltas(state, counters)
        values = {field: getattr(counters, field) for field in FIELDS}
        MeterState.objects.update_or_create(
            server=server, defaults={**values, "domain_id": counters.domain_id, "read_at": now}
        )
        if not deltas or not any(deltas.values()):
            return deltas
        sample, created = UsageSample.objects.get_or_create(
            server=server,
            resolution=UsageSample.FIVE_MINUTES,
            start=_bucket(now),
            defaults={**deltas, "vcpus": counters.vcpus},
        )
        if not created:
            UsageSample.objects.filter(pk=sample.pk).update(**{f: F(f) + deltas[f] for f in FIELDS})
        period = current_period(server, now)
        TransferPeriod.objects.filter(pk=period.pk).update(
            in_bytes=F("in_bytes") + deltas["rx_bytes"], out_bytes=F("out_bytes") + deltas["tx_bytes"]
        )
    return deltas


def meter_host(host: Host, now: datetime | None = None) -> int:
    """Read every running domain of the host in one call and record all its servers in one transaction, in
    a constant handful of statements whatever their number (panel.usage.host_readings); then look at the
    allowance of the few servers near or past it. Returns how many servers' readings were recorded."""
    now = now or timezone.now()
    try:
        readings = collect(host)
    except HypervisorError as exc:
        log.warning("metering: host %s did not answer: %s", host.name, exc.message)
        return 0
    if not readings:
        return 0
    if connection.vendor != "postgresql":
        return _meter_one_by_one(host, readings, now)
    with transaction.atomic():
        servers = host_readings.servers(host.pk, list(readings))
        recorded, latest, increments, traffic = [], [], [], []
        for server in servers:
            if server.read_at is not None and server.read_at > now:
                continue  # a later reading was stored since this one was taken: it would count backwards
            counters = readings[server.server_id]
            values = _counter_values(counters)
            deltas = _deltas_of(server.domain_id, server.counters, counters.domain_id, values)
            recorded.append(server)
            latest.append((server.server_id, counters.domain_id, values))
            if deltas and any(deltas):
                increments.append((server.server_id, deltas, counters.vcpus))
                traffic.append((server.server_id, deltas[0], deltas[1]))
            else:
                traffic.append((server.server_id, 0, 0))
        host_readings.save_readings(latest, now)
        host_readings.add_samples(increments, UsageSample.FIVE_MINUTES, _bucket(now))
        periods = host_readings.add_to_periods(traffic, now)
        created = {server.server_id: server.created_at for server in recorded}
        periods.update(
            host_readings.add_new_periods(
                [
                    (server_id, *period_bounds(created[server_id], now), inbound, outbound)
                    for server_id, inbound, outbound in traffic
                    if periods[server_id] is None
                ]
            )
        )
    due = [server.server_id for server in recorded if _needs_a_look(server, periods[server.server_id])]
    if due:
        for server in Server.objects.filter(pk__in=due).select_related("plan", "host"):
            enforce(server, now)
    return len(recorded)


def _meter_one_by_one(host: Host, readings: dict[str, Counters], now: datetime) -> int:
    """The demo's SQLite (host_readings' statements over arrays are Postgres's): each server recorded as
    meter_server records it, then its allowance looked at."""
    servers = list(
        Server.objects.filter(host=host, id__in=list(readings))
        .exclude(status=Server.Status.DELETED)
        .select_related("plan", "host")
    )
    for server in servers:
        record(server, readings[str(server.id)], now)
        enforce(server, now)
    return len(servers)


def _needs_a_look(server: host_readings.Metered, period: host_readings.Period) -> bool:
    """Whether a metered server's allowance needs a look: near or past it, or with a throttle or suspension
    to lift (in this period or an earlier one). The rest need nothing this cycle."""
    if server.restricted:
        return True
    allowance = _allowance(server.transfer_gib, period.extra_bytes)
    counted = _counted(period.in_bytes, period.out_bytes, server.transfer_direction)
    return allowance is not None and counted * 100 >= min(NOTIFY_AT) * allowance


def meter_server(server: Server, now: datetime | None = None) -> None:
    """Read one server before the panel stops it (best effort: a failure only loses this reading)."""
    if server.host is None:
        return
    try:
        reading = collect(server.host).get(str(server.id))
    except HypervisorError as exc:
        log.info("metering %s before a stop failed: %s", server.id, exc.message)
        return
    if reading is not None:
        record(server, reading, now or timezone.now())


# The allowance and what happens past it.


def counted_bytes(period: TransferPeriod, direction: str) -> int:
    return _counted(period.in_bytes, period.out_bytes, direction)


def _counted(in_bytes: int, out_bytes: int, direction: str) -> int:
    if direction == TransferDirection.IN:
        return in_bytes
    if direction == TransferDirection.OUT:
        return out_bytes
    return in_bytes + out_bytes


def allowance_bytes(server: Server, period: TransferPeriod) -> int | None:
    """None for an unlimited plan: such servers are never throttled or suspended for traffic."""
    return _allowance(server.plan.transfer_gib, period.extra_bytes)


def _allowance(transfer_gib: int | None, extra_bytes: int) -> int | None:
    return None if transfer_gib is None else transfer_gib * GIB + extra_bytes


def usage_report(server: Server, at: datetime | None = None) -> dict:
    """The usage endpoint's body."""
    period = current_period(server, at)
    allowance = allowance_bytes(server, period)
    return {
        "period_start": period.start,
        "period_end": period.end,
        "transfer": {
            "in_bytes": period.in_bytes,
            "out_bytes": period.out_bytes,
            "counted_bytes": counted_bytes(period, server.plan.transfer_direction),
            "allowance_bytes": allowance,
            "direction": server.plan.transfer_direction,
            "extra_bytes": period.extra_bytes,
        },
        "throttled": period.throttled,
        "suspended": period.suspended,
    }


def format_gib(count: int) -> str:
    """Bytes as GiB (1024³ bytes) with two decimals in the active language: 91268055040 → "85.00" ("85,00"
    in Indonesian)."""
    amount = (Decimal(count) / GIB).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return formats.number_format(amount, decimal_pos=2, use_l10n=True, force_grouping=True)


def _notify(server: Server, percent: int, counted: int, allowance: int) -> None:
    """Mail the owner, in the owner's language, that the server used `percent` of its transfer."""
    owner = server.owner
    language = language_of(owner)
    with translation.override(language):
        subject = _("%(name)s has used %(percent)s%% of its monthly transfer") % {
            "name": server.name,
            "percent": percent,
        }
        body = _(
            "Your server %(name)s has used %(used)s GiB of its %(allowance)s GiB monthly transfer "
            "(%(percent)s%%). %(what)s"
        ) % {
            "name": server.name,
            "used": format_gib(counted),
            "allowance": format_gib(allowance),
            "percent": percent,
            "what": _policy_text(server) if percent >= 100 else "",
        }
    mail.send_in_language(language, subject, body, [owner.email], fail_silently=True)


def _policy_text(server: Server) -> str:
    policy = server.plan.over_limit_policy
    if policy == OverLimitPolicy.THROTTLE:
        return _(
            "Its port is limited to %(mbps)s Mbps until the next period or until more transfer is added."
        ) % {"mbps": server.plan.throttle_mbps}
    if policy == OverLimitPolicy.SUSPEND:
        return _("It is suspended until the next period or until more transfer is added.")
    return ""


def enforce(server: Server, now: datetime | None = None) -> None:
    """Notify at 80, 90 and 100 percent; past 100 apply the plan's policy; when a new period began (or
    staff added transfer), restore what an earlier period changed."""
    now = now or timezone.now()
    period = current_period(server, now)
    restore_previous(server, period)
    allowance = allowance_bytes(server, period)
    if allowance is None:
        return
    counted = counted_bytes(period, server.plan.transfer_direction)
    percent = int(counted * 100 // allowance) if allowance else 100
    reached = max((level for level in NOTIFY_AT if percent >= level), default=0)
    if reached > period.notified_percent:
        if TransferPeriod.objects.filter(pk=period.pk, notified_percent__lt=reached).update(
            notified_percent=reached
        ):
            _notify(server, reached, counted, allowance)
    if percent < 100:
        if period.throttled or period.suspended:
            lift(server, period)
        return
    policy = server.plan.over_limit_policy
    if policy == OverLimitPolicy.THROTTLE and not period.throttled:
        if TransferPeriod.objects.filter(pk=period.pk, throttled=False).update(throttled=True):
            apply_port_speed(server, server.plan.throttle_mbps)
    elif policy == OverLimitPolicy.SUSPEND and not period.suspended:
        if TransferPeriod.objects.filter(pk=period.pk, suspended=False).update(suspended=True):
            try:
                suspend_server(
                    server,
                    gettext_noop("Suspended: the monthly transfer allowance is used up."),
                    by=SuspendedBy.TRANSFER,
                )
            except ActionError as exc:  # busy now: the next metering run tries again
                TransferPeriod.objects.filter(pk=period.pk).update(suspended=False)
                log.info("could not suspend %s yet: %s", server.id, exc.message)


def lift(server: Server, period: TransferPeriod) -> None:
    """Undo a throttle or a transfer suspension (a traffic block brought the server under its allowance)."""
    if period.throttled and TransferPeriod.objects.filter(pk=period.pk, throttled=True).update(
        throttled=False
    ):
        apply_port_speed(server, server.plan.port_speed_mbps)
    if period.suspended and TransferPeriod.objects.filter(pk=period.pk, suspended=True).update(
        suspended=False
    ):
        server.refresh_from_db(fields=["status", "suspended_by", "task"])
        if server.suspended_by != SuspendedBy.TRANSFER:
            return  # staff or billing suspended it since: only they lift it
        try:
            unsuspend_server(server)
        except ActionError as exc:
            log.info("could not unsuspend %s yet: %s", server.id, exc.message)


def restore_previous(server: Server, current: TransferPeriod) -> None:
    """A new period: restore the port speed or lift the suspension an earlier period imposed."""
    for old in TransferPeriod.objects.filter(server=server, start__lt=current.start, throttled=True):
        lift(server, old)
    for old in TransferPeriod.objects.filter(server=server, start__lt=current.start, suspended=True):
        lift(server, old)


def add_traffic_block(server: Server, gib: int, now: datetime | None = None, by=None) -> TransferPeriod:
    """Staff add transfer to the server's current period. A worker then re-checks the allowance and lifts
    a throttle or suspension if the server fits again (no libvirt call in the staff's request)."""
    period = current_period(server, now)
    with transaction.atomic():
        TransferPeriod.objects.filter(pk=period.pk).update(extra_bytes=F("extra_bytes") + gib * GIB)
        activity.record(
            ActivityEvent.Type.TRAFFIC_BLOCK,
            summary=gettext_noop("%(gib)s GiB of transfer added to server %(name)s."),
            data={"gib": gib, "name": server.name},
            account=server.owner,
            actor=by,
            target=f"server:{server.id}",
            staff_action=by is not None,
        )
        dispatch.after_commit(
            dispatch.ENFORCE_TRANSFER, str(server.pk), queue=routing.queue_for_region(server.region_id)
        )
    period.refresh_from_db()
    return period


def desired_speed(server: Server) -> int:
    """The port speed the server should have now: the throttle while its period is throttled."""
    period = current_period(server)
    return server.plan.throttle_mbps if period.throttled else server.plan.port_speed_mbps


def after_start(server: Server, new: bool = False) -> None:
    """Every start gives the domain its port speed again (it is never saved in the domain's config),
    unless its host is known not to shape traffic (then the reason is shown instead; a probe retries).

    `new`: the server was just created by the running operation, which read it (with its plan and host):
    it has no transfer period yet (metering makes it), so its plan's port speed applies."""
    if not new:
        # The plan and host as they are now (a resize may have changed the plan since the server was read).
        server = Server.objects.select_related("plan", "host").get(pk=server.pk)
    if server.host is not None and server.host.shaping_error:
        Server.objects.filter(pk=server.pk, bandwidth_error="").update(
            bandwidth_error=server.host.shaping_error
        )
        return
    if new:
        apply_port_speed(server, server.plan.port_speed_mbps, clear_error=bool(server.bandwidth_error))
    else:
        apply_port_speed(server, desired_speed(server))


def apply_port_speed(server: Server, mbps: int | None, clear_error: bool = True) -> bool:
    """Set the server's port speed on its host; a host that cannot shape traffic is recorded for staff.
    `clear_error=False`: the caller knows the server shows no earlier error (nothing to clear)."""
    if server.host is None:
        return False
    try:
        shaping.set_port_speed(server.host, str(server.id), mbps)
    except HypervisorError as exc:
        message = _("The port speed could not be applied: %(error)s") % {"error": exc.message}
        Server.objects.filter(pk=server.pk).update(bandwidth_error=message)
        if "qdisc" in exc.message or "tc " in exc.message:  # the host's kernel lacks the shaping modules
            Host.objects.filter(pk=server.host_id).update(shaping_error=message)
        log.warning("port speed of %s: %s", server.id, exc.message)
        return False
    if clear_error:
        Server.objects.filter(pk=server.pk).exclude(bandwidth_error="").update(bandwidth_error="")
    return True


# Rolling samples up.


def rollup(now: datetime | None = None) -> None:
    """5-minute samples older than two days become hourly ones; hourly ones older than 90 days daily."""
    now = now or timezone.now()
    _roll(UsageSample.FIVE_MINUTES, UsageSample.HOUR, now - timedelta(days=2))
    _roll(UsageSample.HOUR, UsageSample.DAY, now - timedelta(days=90))


def _roll(source: int, target: int, before: datetime) -> None:
    old = UsageSample.objects.filter(resolution=source, start__lt=before).order_by("server_id", "start")
    with transaction.atomic():
        totals: dict[tuple, dict[str, int]] = {}
        vcpus: dict[tuple, int] = {}
        for sample in old.select_for_update():
            start = sample.start - timedelta(seconds=sample.start.timestamp() % target)
            key = (sample.server_id, start)
            bucket = totals.setdefault(key, dict.fromkeys(FIELDS, 0))
            for field in FIELDS:
                bucket[field] += getattr(sample, field)
            vcpus[key] = max(vcpus.get(key, 1), sample.vcpus)
        for (server_id, start), values in totals.items():
            row, created = UsageSample.objects.get_or_create(
                server_id=server_id,
                resolution=target,
                start=start,
                defaults={**values, "vcpus": vcpus[(server_id, start)]},
            )
            if not created:
                UsageSample.objects.filter(pk=row.pk).update(**{f: F(f) + values[f] for f in FIELDS})
        old.delete()
