"""Scenario 4: the periodic work at scale. One reconcile + metering cycle over 100 simulated hosts holding
10,000 domains (made in this process on the same cached test-driver connections the panel's code uses), and
one billing run over 10,000 monthly subscriptions due for renewal. The slowest parts are profiled."""

from __future__ import annotations

import cProfile
import io
import pstats
import random
import time
import uuid
from datetime import timedelta

from .common import Section, env_int, fmt_ms, fmt_s, log, stopwatch, summary

PROJECT = ("/panel/", "/hypervisor/", "/billing/")


def _profile_text(profile: cProfile.Profile, limit: int = 20) -> tuple[str, list[dict]]:
    """The top functions by own time (everything) and by cumulative time (the project's code only)."""
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    top = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        if any(part in filename for part in PROJECT) and "/migrations/" not in filename:
            short = filename.split("/main/", 1)[-1] if "/main/" in filename else filename
            top.append(
                {"function": f"{short}:{line}({name})", "calls": calls, "own_s": tottime, "cum_s": cumtime}
            )
    top.sort(key=lambda row: row["cum_s"], reverse=True)
    return out.getvalue(), top[:limit]


def _setup_domains(world, host_count: int) -> dict:
    """Move the live servers onto the first `host_count` hosts and create their domains there: running
    servers run, stopped and suspended ones are defined and shut off. Drift behind the panel's back: 1% of
    the running guests are shut off, 0.2% have vanished, and each host runs one domain the panel does not
    know. Returns what was made."""
    from hypervisor import connection, driver
    from hypervisor.models import Allocation, Host
    from panel.models import Server
    from panel.servers import guest

    hosts = list(Host.objects.filter(pk__in=[h.pk for h in world.hosts[:host_count]]).order_by("pk"))
    live = list(
        Server.objects.exclude(status=Server.Status.DELETED)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
    )
    for n, host in enumerate(hosts):
        ids = live[n :: len(hosts)]
        Server.objects.filter(id__in=ids).update(host=host)
        Allocation.objects.filter(consumer_uuid__in=ids).update(host=host)
    rng = random.Random(7)
    made = {"domains": 0, "running": 0, "shut_off_behind_back": 0, "vanished": 0, "unknown": 0}
    with stopwatch() as elapsed:
        for host in hosts:
            conn = connection.connection(host)
            servers = Server.objects.filter(host=host).exclude(status=Server.Status.DELETED)
            for server in servers.only("id", "name", "vcpus", "memory_mib", "disk_gib", "status"):
                if server.status == Server.Status.ERROR:
                    continue
                drift = rng.random()
                if server.status == Server.Status.RUNNING and drift < 0.002:
                    made["vanished"] += 1
                    continue
                request = guest.domain_request(server)
                disk = f"/var/lib/libvirt/images/{request.volume_name}"
                domain = conn.defineXML(driver.domain_xml(host, request, disk))
                made["domains"] += 1
                if server.status == Server.Status.RUNNING:
                    if drift < 0.012:
                        made["shut_off_behind_back"] += 1
                    else:
                        domain.create()
                        made["running"] += 1
            stranger = uuid.uuid4()
            request = driver.DomainRequest(stranger, f"stranger-{stranger}", 1, 128, 1)
            conn.defineXML(
                driver.domain_xml(host, request, f"/var/lib/libvirt/images/{stranger}.qcow2")
            ).create()
            made["unknown"] += 1
    made["seconds"] = elapsed()
    made["hosts"] = hosts
    return made


def _cycle(hosts, *, reconcile: bool = True, meter: bool = True) -> dict:
    from panel.servers.reconcile import reconcile_host
    from panel.usage import metering

    result = {"reconcile_s": [], "meter_s": [], "counts": {}, "metered": 0}
    if reconcile:
        for host in hosts:
            start = time.perf_counter()
            counts = reconcile_host(host)
            result["reconcile_s"].append(time.perf_counter() - start)
            for key, value in counts.items():
                result["counts"][key] = result["counts"].get(key, 0) + value
    if meter:
        for host in hosts:
            start = time.perf_counter()
            result["metered"] += metering.meter_host(host)
            result["meter_s"].append(time.perf_counter() - start)
    return result


def run(world) -> tuple[Section, dict]:
    from django.core import mail
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    host_count = env_int("BENCH_PERIODIC_HOSTS", 100)
    section = Section(
        f"4. Periodic work at scale: reconcile + metering over {host_count} simulated hosts, one billing run"
    )
    data: dict = {}

    made = _setup_domains(world, host_count)
    hosts = made.pop("hosts")
    log(f"scenario 4: {made['domains']} domains on {len(hosts)} simulated hosts in {made['seconds']:.1f} s")
    section.note(
        f"{made['domains']} domains ({made['running']} running) made on the hosts in "
        f"{made['seconds']:.1f} s; drift behind the panel's back: {made['shut_off_behind_back']} shut off, "
        f"{made['vanished']} vanished, "
        f"{made['unknown']} unknown"
    )
    data["domains"] = made
    section.note(
        "times are the sum over the hosts, one after another in one process (beat fans the work out as a "
        "Celery task per host, so N workers divide the wall time, not the database work)"
    )
    section.note(
        "libvirt's test driver has no bulk interface/CPU statistics, so stats.collect() reads each domain "
        "here (its fallback, ~0.1 ms a domain in-process); on QEMU it is one getAllDomainStats call per host"
    )

    first = _cycle(hosts)
    log(
        f"scenario 4: first cycle: reconcile {sum(first['reconcile_s']):.1f} s {first['counts']}, "
        f"metering {sum(first['meter_s']):.1f} s ({first['metered']} servers, first readings)"
    )
    time.sleep(1)
    steady = _cycle(hosts)
    log(
        f"scenario 4: steady cycle: reconcile {sum(steady['reconcile_s']):.1f} s {steady['counts']}, "
        f"metering {sum(steady['meter_s']):.1f} s ({steady['metered']} servers)"
    )
    for name, cycle in (("first cycle (drift found, first readings)", first), ("steady cycle", steady)):
        rec, met = sum(cycle["reconcile_s"]), sum(cycle["meter_s"])
        section.add(
            f"reconcile + metering, {name}",
            fmt_s(rec + met, 1),
            target="< 10 s",
            met=(rec + met) < 10 if name == "steady cycle" else None,
        )
        r = summary([s * 1000 for s in cycle["reconcile_s"]])
        m = summary([s * 1000 for s in cycle["meter_s"]])
        section.add(
            f"  reconcile_host x {len(hosts)} ({cycle['counts']})",
            fmt_s(rec, 1),
            fmt_ms(r["p50"]),
            fmt_ms(r["p95"]),
        )
        section.add(
            f"  meter_host x {len(hosts)} ({cycle['metered']} servers read)",
            fmt_s(met, 1),
            fmt_ms(m["p50"]),
            fmt_ms(m["p95"]),
        )
        data["first" if name.startswith("first") else "steady"] = {
            "reconcile_total_s": rec,
            "meter_total_s": met,
            "reconcile_per_host_ms": r,
            "meter_per_host_ms": m,
            "counts": cycle["counts"],
            "metered": cycle["metered"],
        }

    # Where the time goes: SQL queries per host and per server, libvirt listing cost, and a profile.
    probe = hosts[0]
    from panel.models import Server

    on_probe = Server.objects.filter(host=probe).exclude(status=Server.Status.DELETED).count()
    time.sleep(0.5)
    with CaptureQueriesContext(connection) as rq:
        _cycle([probe], meter=False)
    with CaptureQueriesContext(connection) as mq:
        metered = _cycle([probe], reconcile=False)["metered"]
    section.add(
        f"  SQL: reconcile_host {len(rq)} queries/host; meter_host {len(mq)} queries for {metered} servers",
        f"{len(mq) / max(metered, 1):.1f}/server",
    )
    data["queries"] = {
        "reconcile_per_host": len(rq),
        "meter_per_host": len(mq),
        "metered_on_host": metered,
        "servers_on_host": on_probe,
    }
    data["libvirt"] = _libvirt_listing(probe)
    section.add(
        "  libvirt: listAllDomains + state() per domain vs getAllDomainStats(STATE)",
        f"{data['libvirt']['calls_now']} vs 1 call",
        fmt_ms(data["libvirt"]["per_domain_ms"]),
        fmt_ms(data["libvirt"]["bulk_ms"]),
    )
    profiled = hosts[: max(1, env_int("BENCH_PROFILE_HOSTS", 10))]
    time.sleep(0.5)
    profile = cProfile.Profile()
    profile.enable()
    _cycle(profiled)
    profile.disable()
    text, top = _profile_text(profile)
    data["profile_cycle"] = {"hosts": len(profiled), "top_own_time": text, "top_project_cumulative": top}

    # Billing: every live subscription is due now.
    section.add("")
    billing_data = _billing(world, section)
    data["billing"] = billing_data
    mail.outbox = []
    return section, data


def _libvirt_listing(host) -> dict:
    """What the reconcile listing costs now (one listing, then a state() call per domain: one round trip
    each on a remote host) against one bulk statistics call with only the state."""
    import libvirt

    from hypervisor import connection, driver

    conn = connection.connection(host)
    start = time.perf_counter()
    states = driver.domain_states(host)
    per_domain = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    bulk = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
    bulk_ms = (time.perf_counter() - start) * 1000
    assert len(bulk) == len(states)
    return {
        "domains": len(states),
        "calls_now": 1 + len(states),
        "per_domain_ms": per_domain,
        "bulk_ms": bulk_ms,
    }


def _billing(world, section: Section) -> dict:
    from django.core import mail
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from billing import cycle as billing_cycle
    from billing.models import Invoice, Subscription

    at = timezone.now()
    due = Subscription.objects.filter(cycle=Subscription.Cycle.MONTHLY).exclude(
        status=Subscription.Status.ENDED
    )
    count = due.count()
    due.update(period_start=at - timedelta(days=31), paid_through=at - timedelta(hours=1))
    mail.outbox = []
    invoices_before = Invoice.objects.count()
    log(f"scenario 4: billing run over {count} due monthly subscriptions")
    with stopwatch() as elapsed:
        result = billing_cycle.run(at)
    seconds = elapsed()
    made = Invoice.objects.count() - invoices_before
    log(f"scenario 4: billing run {seconds:.1f} s: {result}, {made} invoices, {len(mail.outbox)} mails")
    section.add(
        f"billing_run over {count} due monthly subscriptions",
        fmt_s(seconds, 1),
        target="< 30 s",
        met=seconds < 30,
    )
    section.add(
        f"  renewed {result.get('renewed')}, {made} invoices issued, {len(mail.outbox)} mails",
        f"{count / seconds:.0f} subs/s" if seconds else "—",
    )

    # Queries per renewal, on a few subscriptions made due again.
    sample = list(due.order_by("id").values_list("id", flat=True)[:20])
    Subscription.objects.filter(id__in=sample).update(paid_through=at - timedelta(hours=1))
    with CaptureQueriesContext(connection) as queries:
        billing_cycle.renew(at)
    per = len(queries) / max(len(sample), 1)
    accounts = Subscription.objects.filter(id__in=sample).values("account").distinct().count()
    section.add(
        f"  SQL: {len(queries)} queries for {len(sample)} renewals on {accounts} accounts "
        "(one transaction per account)",
        f"{per:.1f}/subscription",
    )

    # A profile of a smaller run.
    subset = list(
        due.order_by("-id").values_list("id", flat=True)[: env_int("BENCH_PROFILE_SUBSCRIPTIONS", 1000)]
    )
    Subscription.objects.filter(id__in=subset).update(paid_through=at - timedelta(hours=1))
    profile = cProfile.Profile()
    profile.enable()
    billing_cycle.run(at)
    profile.disable()
    text, top = _profile_text(profile)
    return {
        "subscriptions": count,
        "seconds": seconds,
        "result": result,
        "invoices": made,
        "mails": len(mail.outbox),
        "queries_per_renewal": per,
        "profile": {"subscriptions": len(subset), "top_own_time": text, "top_project_cumulative": top},
    }
