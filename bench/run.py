"""`make bench`: the panel's benchmarks against real Postgres, Redis, Celery workers and libvirt.

    python -m bench.run            (make bench runs this after make setup and the test services)

Scenarios (BENCH_SCENARIOS=1,2,3,4 chooses):
  1. provisioning throughput on simulated hosts (libvirt test driver) through the API, the shipped
     web server and Celery worker configuration (sized from the CPU count),
     with the same libvirt work made directly with libvirt-python as the baseline;
  2. real KVM orders on qemu:///system against raw define + start;
  3. pages and API lists at scale (latency and SQL queries per request);
  4. periodic work at scale: reconcile + metering over 1,000 simulated hosts (about 100,000 domains) done by
     real Celery worker processes, and one billing run over the 100,000-server world's subscriptions;
  5. placement: one claim in a region of 10 hosts and 100 servers against one of 1,000 hosts and 100,000.

A separate database (vpspanel_bench) is created for the run and dropped afterwards (BENCH_KEEP_DB=1 keeps
it); Redis db 3 is the broker. The table is printed and written to bench/results.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"

DEFAULT_DATABASE_URL = "postgres://postgres:postgres@127.0.0.1:5432/vpspanel_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"


def configure_environment() -> dict[str, str]:
    """The panel's settings for the benchmark: production mode (no DEBUG), the bench database and Redis db,
    a queue of its own. Returned as the environment for the workers and the web server too."""
    env = {
        "DJANGO_SETTINGS_MODULE": "panel.settings",
        "DEBUG": "",
        "DEMO": "",
        "HTTPS": "0",  # the benchmark's clients speak plain HTTP on loopback (no TLS proxy in front)
        "SECRET_KEY": "bench-only-secret-key-not-for-production",  # noqa: S105 (benchmark database only)
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        "CELERY_QUEUE": "bench",
        "INVOICE_MAIL_QUEUE": "bench-mail",  # served by the nice-19 mail worker (provisioning.MAIL_QUEUE)
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "PANEL_DATA_DIR": str(ROOT / "var" / "bench"),
        "STATIC_ROOT": str(ROOT / "var" / "bench" / "static"),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    (ROOT / "var" / "bench" / "logs").mkdir(parents=True, exist_ok=True)
    return dict(os.environ)


def _admin_url(database_url: str) -> tuple[str, str]:
    """(URL of the server's `postgres` database, name of the bench database)."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    return urlunsplit(parts._replace(path="/postgres")), name


def create_database(database_url: str) -> None:
    import psycopg2

    admin, name = _admin_url(database_url)
    if not name.endswith("_bench"):
        raise SystemExit(f"refusing to drop and create {name!r}: the bench database's name ends in _bench")
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def drop_database(database_url: str) -> None:
    import psycopg2

    admin, name = _admin_url(database_url)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def machine() -> dict:
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    postgres = ""
    try:
        postgres = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": postgres,
        "kvm": os.path.exists("/dev/kvm"),
    }


def main() -> int:
    from .common import Section, env_str, log, render_table

    started = time.monotonic()
    env = configure_environment()
    scenarios = {s.strip() for s in env_str("BENCH_SCENARIOS", "1,2,3,4,5").split(",") if s.strip()}
    info = machine()
    log(
        f"machine: {info['nproc']} CPUs, {info['memory_gib']} GiB, {info['cpu']}; "
        f"scenarios {sorted(scenarios)}"
    )
    create_database(env["DATABASE_URL"])
    log(f"created {urlsplit(env['DATABASE_URL']).path.lstrip('/')}")

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)
    log("migrated; static files collected")
    quiet_this_process()

    from . import machine_speed, pages, periodic, placement, provisioning

    speed = {"start": machine_speed.measure()}
    log(f"this machine's speed: {speed['start']}")
    speed_section = Section(
        "0. This machine's speed, to compare runs (CPU time of fixed work, lower is faster)"
    )
    sections: list[Section] = [speed_section]
    results: dict = {"machine": info, "machine_speed": speed, "scenarios": {}}
    workdir = Path(tempfile.mkdtemp(prefix="vpspanel-bench-"))
    try:
        if scenarios & {"1", "2"}:
            with provisioning.Cluster(env, workdir) as cluster:
                if "1" in scenarios:
                    section, data = provisioning.simulated(cluster, workdir)
                    sections.append(section)
                    results["scenarios"]["provisioning_simulated"] = data
                if "2" in scenarios:
                    section, data = provisioning.kvm(cluster, workdir)
                    sections.append(section)
                    results["scenarios"]["provisioning_kvm"] = data
        if scenarios & {"3", "4"}:
            reset_database()
            world = pages.seed(workdir)
            if "3" in scenarios:
                section, data = pages.measure(world)
                sections.append(section)
                results["scenarios"]["pages"] = data
            if "4" in scenarios:
                section, data = periodic.run(world)
                sections.append(section)
                results["scenarios"]["periodic"] = data
        if "5" in scenarios:
            section, data = placement.run()
            sections.append(section)
            results["scenarios"]["placement"] = data
        speed["end"] = machine_speed.measure()
        for key, what in (
            ("python_ms", "a fixed pure-Python workload, median of 5 rounds (bench/machine_speed.py)"),
            ("postgres_ms", f"Postgres answering {machine_speed.READS:,} one-row reads, its backend's CPU"),
        ):
            speed_section.add(
                f"{what}: at the start / at the end", f"{speed['start'][key]} / {speed['end'][key]} ms"
            )
    finally:
        from django.db import connections

        from panel.celery import app

        app.control.purge()  # nothing the scenarios enqueued outlives the run
        connections.close_all()
        if os.environ.get("BENCH_KEEP_DB", "") not in ("", "0"):
            log(f"kept the database {env['DATABASE_URL']}")
        else:
            drop_database(env["DATABASE_URL"])
            log("dropped the bench database")
        subprocess.run(["rm", "-rf", str(workdir)], check=False)

    results["elapsed_s"] = round(time.monotonic() - started, 1)
    header = (
        f"VPS panel benchmark, {info['date']}: {info['nproc']} CPUs ({info['cpu']}), "
        f"{info['memory_gib']} GiB, Linux {info['kernel']}, Python {info['python']}, {info['postgres']}; "
        f"{results['elapsed_s']} s in all"
    )
    table = render_table(sections)
    print()
    print(header)
    print()
    print(table)
    results["table"] = table
    print_profiles(results)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


def print_profiles(results: dict) -> None:
    """The project's functions that took the longest (cumulative) in the profiled periodic work."""
    periodic = results["scenarios"].get("periodic") or {}
    simulated = (results["scenarios"].get("provisioning_simulated") or {}).get("profile") or {}
    orders = f"{simulated.get('orders')} orders"
    for title, size, profile in (
        ("order_server (API side)", orders, simulated.get("order_profile")),
        ("create operations (worker side)", orders, simulated.get("create_profile")),
        (
            "reconcile + metering",
            f"{(periodic.get('profile_cycle') or {}).get('hosts')} hosts",
            periodic.get("profile_cycle"),
        ),
        (
            "billing run",
            f"{((periodic.get('billing') or {}).get('profile') or {}).get('subscriptions')} subscriptions",
            (periodic.get("billing") or {}).get("profile"),
        ),
    ):
        if not profile:
            continue
        print(f"Profile of {title} ({size}), the project's functions by cumulative time:")
        for row in profile["top_project_cumulative"][:12]:
            print(
                f"  {row['cum_s']:8.2f} s cum {row['own_s']:7.2f} s own {row['calls']:>9} calls  "
                f"{row['function']}"
            )
        print()


def quiet_this_process() -> None:
    """In this process mail goes to memory (there is no SMTP server; the web server and workers print it to
    their logs) and the panel's log lines go to var/bench/logs/bench.log instead of the terminal."""
    import logging

    from django.conf import settings

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    handler = logging.FileHandler(ROOT / "var" / "bench" / "logs" / "bench.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().handlers = [handler]


def reset_database() -> None:
    """Empty every table (the scale scenarios start from an installation of their own)."""
    from django.core.management import call_command

    call_command("flush", verbosity=0, interactive=False)


if __name__ == "__main__":
    sys.exit(main())
