"""Scenario 4: the periodic work at scale, as beat and the workers do it. Every ready simulated host of the
seeded world gets its domains written into its node file (libvirt's test driver reads them when a process
opens the host's URI, so every worker sees the same host), with drift behind the panel's back. A reconcile +
metering cycle is then what beat sends (`reconcile_all_hosts` and `meter_all_hosts`, which fan out one task
per host), consumed by real Celery worker processes; its wall time runs from the first task sent to the
last one done (from the workers' task events). The statements and CPU time per host are measured and
profiled in this process. Then one billing run over the monthly subscriptions made due, fanned out in
batches of accounts over the same workers."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from .common import (
    Section,
    celery_worker,
    env_int,
    fmt_ms,
    fmt_s,
    log,
    process_cpu_seconds,
    purge_queues,
    stop_processes,
    stopwatch,
    summary,
)

PROJECT = ("/panel/", "/hypervisor/", "/billing/")
ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "var" / "bench" / "logs"
# libvirt's test driver reads a domain's run state from its own XML namespace in the node file.
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
VIR_DOMAIN_SHUTOFF = 5
RECONCILE_TASK, METER_TASK = "panel.tasks.reconcile_host", "panel.tasks.meter_host"
RECONCILE_ALL, METER_ALL = "panel.tasks.reconcile_all_hosts", "panel.tasks.meter_all_hosts"
CYCLE_TARGET_S = 60.0
MAIL_QUEUE = "bench.invoice-mail"


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


# The simulated hosts' domains, in their node files.


def _node_path(host) -> Path:
    if not host.uri.startswith("test://"):
        raise ValueError(f"{host.name} is not a simulated host ({host.uri})")
    return Path(host.uri.removeprefix("test://"))


def _domain_element(host, server_id, name: str, vcpus: int, memory_mib: int, disk_gib: int, shut_off: bool):
    """The domain as the panel defines it (driver.domain_xml), with the test driver's run state."""
    from lxml import etree

    from hypervisor import driver

    request = driver.DomainRequest(server_id, name, vcpus, memory_mib, disk_gib)
    element = etree.fromstring(
        driver.domain_xml(host, request, f"/var/lib/libvirt/images/{request.volume_name}").encode()
    )
    if shut_off:
        etree.SubElement(element, f"{{{TEST_NS}}}runstate", nsmap={"test": TEST_NS}).text = str(
            VIR_DOMAIN_SHUTOFF
        )
    return element


def _write_domains(hosts) -> dict:
    """Write each host's domains into its node file: running servers run, stopped and suspended ones are
    defined and shut off, servers in error have none. Drift behind the panel's back: 1% of the running
    guests are shut off, 0.2% have vanished, and each host runs one domain the panel does not know. The
    processes that open a host's URI from now on see these domains (this one forgets its connections)."""
    from lxml import etree

    from hypervisor import connection
    from panel.models import Server

    by_host: dict[int, list[tuple]] = {host.pk: [] for host in hosts}
    rows = (
        Server.objects.filter(host__in=hosts)
        .exclude(status__in=(Server.Status.DELETED, Server.Status.ERROR))
        .order_by("host_id", "created_at", "id")
        .values_list("host_id", "id", "name", "vcpus", "memory_mib", "disk_gib", "status")
    )
    for row in rows:
        by_host[row[0]].append(row[1:])
    rng = random.Random(7)
    made = {"domains": 0, "running": 0, "shut_off_behind_back": 0, "vanished": 0, "unknown": 0}
    with stopwatch() as elapsed:
        for host in hosts:
            path = _node_path(host)
            node = etree.parse(str(path)).getroot()
            for old in node.findall("domain"):
                node.remove(old)
            for server_id, name, vcpus, memory_mib, disk_gib, status in by_host[host.pk]:
                drift = rng.random()
                running = status == Server.Status.RUNNING
                if running and drift < 0.002:
                    made["vanished"] += 1
                    continue
                shut_off = not running or drift < 0.012
                if running and shut_off:
                    made["shut_off_behind_back"] += 1
                node.append(_domain_element(host, server_id, name, vcpus, memory_mib, disk_gib, shut_off))
                made["domains"] += 1
                made["running"] += not shut_off
            stranger = uuid.uuid4()
            node.append(_domain_element(host, stranger, f"stranger-{stranger}", 1, 128, 1, False))
            made["unknown"] += 1
            path.write_bytes(etree.tostring(node, pretty_print=True))
            connection.forget(host.uri)
    made["seconds"] = elapsed()
    return made


# Real workers, and what their task events say.


class Workers:
    """BENCH_WORKERS Celery worker processes (default: one per CPU), `--concurrency 1` each as scenario 1's
    cluster starts them, sending task events; a receiver of those events runs in this process."""

    def __init__(self, env: dict[str, str], count: int):
        self.env, self.count = env, count
        self.processes: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self.names: dict[str, str] = {}  # task id -> task name
        self.done: dict[str, list[tuple[float, float]]] = {}  # task name -> (timestamp, runtime) each
        self.failed: list[dict] = []
        self.ready = threading.Event()
        self.receiver = None

    def __enter__(self) -> Workers:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        from panel.celery import app

        app.control.purge()
        for number in range(1, self.count + 1):
            out = open(LOGS / f"periodic-worker{number}.log", "w")  # closed in __exit__, with the process
            command = celery_worker(
                f"periodic{number}@%h",
                1,
                *("--task-events", "--without-gossip", "--without-mingle", "--without-heartbeat"),
            )
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            process.log = out
            self.processes.append(process)
        threading.Thread(target=self._listen, name="task-events", daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(app.control.ping(timeout=0.5)) >= self.count and self.ready.is_set():
                break
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a Celery worker exited with {process.returncode} (see {LOGS})")
        else:
            raise RuntimeError(f"the Celery workers did not answer within 60 s (see {LOGS})")
        log(f"scenario 4: {self.count} Celery worker processes are up")

    def _listen(self) -> None:
        from panel.celery import app

        def received(event: dict) -> None:
            with self.lock:
                self.names[event["uuid"]] = event["name"]

        def succeeded(event: dict) -> None:
            with self.lock:
                name = self.names.get(event["uuid"], "?")
                self.done.setdefault(name, []).append((event["timestamp"], event.get("runtime") or 0.0))

        def failed(event: dict) -> None:
            with self.lock:
                self.failed.append(event)

        handlers = {"task-received": received, "task-succeeded": succeeded, "task-failed": failed}
        with app.connection_for_read() as conn:
            self.receiver = app.events.Receiver(conn, handlers=handlers)
            self.receiver.on_consume_ready = lambda *args, **kwargs: self.ready.set()
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the worker processes and their pool processes used so far."""
        pids = [process.pid for process in self.processes]
        pids += [pid for pid, parent in _processes() if parent in pids]
        return sum(_cpu_of(pid) for pid in pids)

    def run(self, task_names: list[str], expected: dict[str, int], timeout: float = 900.0) -> dict:
        """Send the tasks as beat sends them and wait until the `expected` number of each named task is
        done. Returns the wall time from the first send to the last done, and each task's runtimes."""
        from panel.celery import app

        with self.lock:
            self.names.clear()
            self.done.clear()
            self.failed.clear()
        cpu = self.cpu_seconds()
        sent = time.time()
        for name in task_names:
            app.send_task(name)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                counts = {name: len(self.done.get(name, ())) for name in expected}
                failed = list(self.failed)
            if failed:
                raise RuntimeError(f"{len(failed)} task(s) failed, e.g. {failed[0].get('exception')}")
            if all(counts[name] >= count for name, count in expected.items()):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cycle did not finish within {timeout:.0f} s: {counts} of {expected}")
            time.sleep(0.05)
        with self.lock:
            done = {name: list(self.done.get(name, ())) for name in expected}
        last = max(timestamp for rows in done.values() for timestamp, _runtime in rows)
        return {
            "wall_s": last - sent,
            "worker_cpu_s": self.cpu_seconds() - cpu,
            "runtime_ms": {name: summary([r * 1000 for _t, r in rows]) for name, rows in done.items()},
            "task_s": {name: sum(r for _t, r in rows) for name, rows in done.items()},
        }

    def __exit__(self, *exc_info) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        stop_processes(self.processes)
        log("scenario 4: Celery workers stopped")


def _processes() -> list[tuple[int, int]]:
    """(pid, parent pid) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found.append((int(entry.name), int(fields[1])))
    return found


def _cpu_of(pid: int) -> float:
    """A process's CPU seconds; 0 for one that has ended."""
    try:
        return process_cpu_seconds(pid)
    except OSError:
        return 0.0


# One cycle through the workers, and what it changed.


def _state_counts() -> dict[str, int]:
    from django.db.models import Count

    from panel.models import Notice, Server

    statuses = dict(
        Server.objects.exclude(status=Server.Status.DELETED).values_list("status").annotate(n=Count("id"))
    )
    unknown = Notice.objects.filter(key__startswith="unknown-domain:", resolved_at__isnull=True).count()
    return {**statuses, "unknown_notices": unknown}


def _worker_cycle(workers: Workers, hosts: list) -> dict:
    from django.utils import timezone

    from panel.models import MeterState

    before = _state_counts()
    started = timezone.now()
    result = workers.run([RECONCILE_ALL, METER_ALL], {RECONCILE_TASK: len(hosts), METER_TASK: len(hosts)})
    after = _state_counts()
    result["metered"] = MeterState.objects.filter(read_at__gte=started).count()
    result["changes"] = {
        "stopped": after.get("stopped", 0) - before.get("stopped", 0),
        "vanished": after.get("error", 0) - before.get("error", 0),
        "unknown": after["unknown_notices"],
    }
    return result


def _in_process(hosts, *, reconcile: bool = True, meter: bool = True) -> dict:
    """The cycle's work for these hosts in this process, one host after another, in CPU seconds."""
    from panel.servers.reconcile import reconcile_host
    from panel.usage import metering

    result = {"reconcile_cpu_s": [], "meter_cpu_s": [], "metered": 0}
    for host in hosts:
        if reconcile:
            start = time.process_time()
            reconcile_host(host)
            result["reconcile_cpu_s"].append(time.process_time() - start)
        if meter:
            start = time.process_time()
            result["metered"] += metering.meter_host(host)
            result["meter_cpu_s"].append(time.process_time() - start)
    return result


def run(world) -> tuple[Section, dict]:
    from django.core import mail
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from hypervisor.models import Host

    hosts = list(
        Host.objects.filter(pk__in=[h.pk for h in world.hosts], state=Host.State.READY).order_by("pk")
    )
    made = _write_domains(hosts)
    section = Section(
        f"4. Periodic work at scale: reconcile + metering over {made['domains']} domains on {len(hosts)} "
        "simulated hosts through Celery workers, one billing run"
    )
    data: dict = {"domains": made, "hosts": len(hosts)}
    log(
        f"scenario 4: {made['domains']} domains written on {len(hosts)} simulated hosts "
        f"in {made['seconds']:.1f} s"
    )
    section.note(
        f"{made['domains']} domains ({made['running']} running) written into the hosts' node files in "
        f"{made['seconds']:.1f} s; drift behind the panel's back: {made['shut_off_behind_back']} shut off, "
        f"{made['vanished']} vanished, {made['unknown']} unknown"
    )
    count = env_int("BENCH_WORKERS", os.cpu_count() or 2)
    # The billing run's invoice mails (a PDF each) go to a queue of their own that no worker here serves, as
    # a deployment gives them workers of their own (INVOICE_MAIL_QUEUE); it is emptied afterwards.
    env = {**os.environ, "INVOICE_MAIL_QUEUE": MAIL_QUEUE}
    with Workers(env, count) as workers:
        section.note(
            f"a cycle is what beat sends ({RECONCILE_ALL} and {METER_ALL}, one task per host each), consumed "
            f"by {count} Celery worker processes (--concurrency 1); wall time from the first task sent to "
            "the last done, from the workers' task events"
        )
        first = _worker_cycle(workers, hosts)
        log(
            f"scenario 4: first cycle {first['wall_s']:.1f} s, {first['changes']}, {first['metered']} metered"
        )
        # Each worker process opens a host's connection the first time it gets one of the host's tasks
        # (on a simulated host that parses its node file); a deployed worker keeps them open. Warm-up
        # cycles let every worker open every host before the steady cycle is measured.
        warmups = []
        for _ in range(env_int("BENCH_PERIODIC_WARMUP", 1)):
            time.sleep(1)
            warm = _worker_cycle(workers, hosts)
            warmups.append(warm)
            log(f"scenario 4: warm-up cycle {warm['wall_s']:.1f} s")
        time.sleep(1)
        steady = _worker_cycle(workers, hosts)
        log(f"scenario 4: steady cycle {steady['wall_s']:.1f} s, {steady['metered']} metered")
        # The warm-up cycles find no new drift: what the first cycle spent beyond them is the drift repair and
        # the first readings; what they spend beyond the steady cycle, the workers opening hosts.
        cycles = [("first cycle (drift found, first readings)", first)]
        warm_name = "warm-up cycle (no new drift; workers open the hosts they had not)"
        cycles += [(warm_name, warm) for warm in warmups]
        cycles.append(("steady cycle", steady))
        for name, cycle in cycles:
            section.add(
                f"reconcile + metering, {name}",
                fmt_s(cycle["wall_s"], 1),
                target=f"< {CYCLE_TARGET_S:.0f} s",
                met=cycle["wall_s"] < CYCLE_TARGET_S if name == "steady cycle" else None,
            )
            section.add(
                f"  CPU of the worker processes (Postgres not included) {fmt_s(cycle['worker_cpu_s'], 1)}"
            )
            for task, label in ((RECONCILE_TASK, "reconcile_host"), (METER_TASK, "meter_host")):
                times = cycle["runtime_ms"][task]
                section.add(
                    f"  {label} x {times['count']} in the workers (sum of task runtimes)",
                    fmt_s(cycle["task_s"][task], 1),
                    fmt_ms(times["p50"]),
                    fmt_ms(times["p95"]),
                )
            section.add(f"  servers metered {cycle['metered']}; changes {cycle['changes']}")
        expected = {
            "stopped": made["shut_off_behind_back"],
            "vanished": made["vanished"],
            "unknown": made["unknown"],
        }
        section.add(
            "  drift found in the first cycle (stopped, vanished, unknown)",
            " / ".join(str(first["changes"][k]) for k in expected),
            target=" / ".join(str(v) for v in expected.values()),
            met=first["changes"] == expected,
        )
        data["first"], data["warmups"], data["steady"] = first, warmups, steady

        section.add("")
        data["billing"] = _billing(section, workers)

    purge_queues(MAIL_QUEUE)

    # Where the time goes, in this process: statements per host and CPU per host (steady state).
    probe = hosts[0]
    from panel.models import Server

    on_probe = Server.objects.filter(host=probe).exclude(status=Server.Status.DELETED).count()
    with CaptureQueriesContext(connection) as rq:
        _in_process([probe], meter=False)
    with CaptureQueriesContext(connection) as mq:
        metered = _in_process([probe], reconcile=False)["metered"]
    section.add(
        f"  SQL per host ({on_probe} servers, {metered} metered): reconcile_host {len(rq)} statements, "
        f"meter_host {len(mq)} statements"
    )
    sample = hosts[: max(1, env_int("BENCH_PROFILE_HOSTS", 20))]
    _in_process(sample)  # this process opens the hosts' connections first, as a worker did long ago
    cpu = _in_process(sample)
    r, m = (
        summary([s * 1000 for s in cpu["reconcile_cpu_s"]]),
        summary([s * 1000 for s in cpu["meter_cpu_s"]]),
    )
    section.add(
        f"  CPU of reconcile_host in this process ({len(sample)} hosts)",
        "",
        fmt_ms(r["p50"]),
        fmt_ms(r["p95"]),
    )
    section.add(
        f"  CPU of meter_host in this process ({len(sample)} hosts)", "", fmt_ms(m["p50"]), fmt_ms(m["p95"])
    )
    data["queries"] = {
        "reconcile_per_host": len(rq),
        "meter_per_host": len(mq),
        "metered_on_host": metered,
        "servers_on_host": on_probe,
    }
    data["cpu_per_host_ms"] = {"reconcile": r, "meter": m}
    data["libvirt"] = _libvirt_listing(probe)
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    _in_process(sample)
    profile.disable()
    text, top = _profile_text(profile)
    data["profile_cycle"] = {"hosts": len(sample), "top_own_time": text, "top_project_cumulative": top}
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


def _billing(section: Section, workers: Workers) -> dict:
    """One billing run as beat sends it (`billing.tasks.billing_run`, which fans the renewals out in tasks
    of BILLING_RENEWAL_BATCH accounts), over every live monthly subscription made due; then, in this
    process, the statements and CPU per account and a profile of a smaller run."""
    from django.conf import settings
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
    accounts = due.values("account").distinct().count()
    size = settings.BILLING_RENEWAL_BATCH
    batches = -(-accounts // size)
    invoices_before = Invoice.objects.count()
    log(f"scenario 4: billing run over {count} due monthly subscriptions of {accounts} accounts")
    run = workers.run(
        ["billing.tasks.billing_run"],
        {"billing.tasks.billing_run": 1, "billing.tasks.renew_accounts": batches},
        timeout=3600,
    )
    seconds = run["wall_s"]
    made = Invoice.objects.count() - invoices_before
    log(f"scenario 4: billing run {seconds:.1f} s, {made} invoices")
    section.add(
        f"billing_run over {count} due monthly subscriptions ({accounts} accounts, {batches} tasks)",
        fmt_s(seconds, 1),
        target="< 180 s",
        met=seconds < 180 and made == count,
    )
    renewals = run["runtime_ms"]["billing.tasks.renew_accounts"]
    section.add(
        f"  {made} invoices issued; renew_accounts x {batches} of {size} accounts; worker CPU "
        f"{fmt_s(run['worker_cpu_s'], 1)}",
        f"{count / seconds:.0f} subs/s" if seconds else "—",
        fmt_ms(renewals["p50"]),
        fmt_ms(renewals["p95"]),
    )

    # Statements and CPU per account, in this process, on accounts made due again.
    sample = list(due.order_by("account_id").values_list("account_id", flat=True).distinct()[:50])
    again = Subscription.objects.filter(account_id__in=sample, cycle=Subscription.Cycle.MONTHLY).exclude(
        status=Subscription.Status.ENDED
    )
    again.update(paid_through=at - timedelta(hours=1))
    with CaptureQueriesContext(connection) as queries:
        billing_cycle.renew_accounts(sample[:1], at)
    start = time.process_time()
    billing_cycle.renew_accounts(sample[1:], at)
    cpu_ms = (time.process_time() - start) * 1000 / max(1, len(sample) - 1)
    per_account = again.count() / max(1, len(sample))
    section.add(
        f"  SQL: {len(queries)} statements to renew one account (one transaction); CPU {cpu_ms:.1f} ms an "
        f"account of {per_account:.0f} subscriptions on average in this process"
    )
    again.update(paid_through=at - timedelta(hours=1))
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    billing_cycle.renew_accounts(sample, at)
    profile.disable()
    text, top = _profile_text(profile)
    return {
        "subscriptions": count,
        "accounts": accounts,
        "batches": batches,
        "seconds": seconds,
        "run": run,
        "invoices": made,
        "statements_per_account": len(queries),
        "cpu_ms_per_account": cpu_ms,
        "profile": {"subscriptions": again.count(), "top_own_time": text, "top_project_cumulative": top},
    }
