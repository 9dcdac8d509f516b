"""Scenario 5: placement in constant time. A claim in a region of 10 hosts holding 100 servers against one in
a region of 1,000 hosts holding 100,000 servers: the same statements, the same cost (the hosts' usage
counters are kept by the allocation trigger; nothing sums a region's allocations)."""

from __future__ import annotations

import io
import time
import uuid
from decimal import Decimal

from .common import Section, env_int, fmt_ms, log, summary


def _region(slug: str, hosts: int, servers: int):
    """A region of `hosts` ready hosts sharing `servers` allocations (COPY with the trigger off, then the
    counters set in one statement as the trigger would have)."""
    from django.db import connection

    from hypervisor.models import Allocation, Host, Region

    region = Region.objects.create(slug=slug, name=slug)
    made = Host.objects.bulk_create(
        Host(
            name=f"{slug}-{i}",
            uri=f"test:///{slug}-{i}",
            region=region,
            state=Host.State.READY,
            vcpus_total=512,
            memory_mib_total=1024 * 1024,
            disk_gib_total=100000,
            reserved_memory_mib=0,
            cpu_allocation_ratio=Decimal("4"),
        )
        for i in range(hosts)
    )
    buffer = io.StringIO()
    for i in range(servers):
        host = made[i % hosts]
        buffer.write(f"{uuid.uuid4()}\t{host.pk}\t1\t1024\t20\t2026-01-01 00:00:00+00\n")
    buffer.seek(0)
    table = Allocation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # the trigger is off for the bulk load
        try:
            cursor.cursor.copy_expert(
                f'COPY "{table}" (consumer_uuid, host_id, vcpus, memory_mib, disk_gib, created_at) '
                "FROM STDIN",
                buffer,
            )
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute(
            f'UPDATE "{Host._meta.db_table}" h '
            "SET used_vcpus = s.v, used_memory_mib = s.m, used_disk_gib = s.d "
            f'FROM (SELECT host_id, SUM(vcpus) v, SUM(memory_mib) m, SUM(disk_gib) d FROM "{table}" '
            "GROUP BY host_id) s WHERE h.id = s.host_id AND h.region_id = %s",
            [region.pk],
        )
        cursor.execute(f'ANALYZE "{table}"')
        cursor.execute(f'ANALYZE "{Host._meta.db_table}"')
    return region


def _measure(region, rounds: int) -> dict:
    """Claims in the region, each in a transaction rolled back afterwards (every round sees the same
    region): CPU time of this process, wall time, statements."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from hypervisor import claims
    from hypervisor.placement import Resources

    need = Resources(vcpus=1, memory_mib=1024, disk_gib=20)
    cpu, wall, queries = [], [], 0

    class Rollback(Exception):
        pass

    for i in range(rounds + 5):
        try:
            with transaction.atomic():
                with CaptureQueriesContext(connection) as captured:
                    start_cpu, start = time.process_time(), time.perf_counter()
                    claims.claim(uuid.uuid4(), region, need)
                    spent_cpu, spent = time.process_time() - start_cpu, time.perf_counter() - start
                raise Rollback
        except Rollback:
            pass
        if i >= 5:  # after warm-ups
            cpu.append(spent_cpu * 1000)
            wall.append(spent * 1000)
            queries = len(captured)
    return {"cpu_ms": summary(cpu), "wall_ms": summary(wall), "queries": queries}


def run() -> tuple[Section, dict]:
    rounds = env_int("BENCH_PLACEMENT_ROUNDS", 200)
    sizes = [
        (env_int("BENCH_PLACEMENT_SMALL_HOSTS", 10), env_int("BENCH_PLACEMENT_SMALL_SERVERS", 100)),
        (env_int("BENCH_PLACEMENT_HOSTS", 1000), env_int("BENCH_PLACEMENT_SERVERS", 100000)),
    ]
    section = Section(f"5. Placement: one claim ({rounds} each, rolled back) in a small and a large region")
    data = {}
    for hosts, servers in sizes:
        start = time.perf_counter()
        region = _region(f"bench-place-{hosts}", hosts, servers)
        took = time.perf_counter() - start
        log(f"scenario 5: a region of {hosts} hosts and {servers} servers in {took:.1f} s")
        result = _measure(region, rounds)
        data[f"{hosts}_hosts_{servers}_servers"] = result
        section.add(
            f"claim: {hosts} hosts, {servers:,} servers (statements; CPU p50/p95 in the next columns)",
            f"{result['queries']} statements",
            fmt_ms(result["cpu_ms"]["p50"]),
            fmt_ms(result["cpu_ms"]["p95"]),
        )
        section.add(
            "  wall time", "", fmt_ms(result["wall_ms"]["p50"]), fmt_ms(result["wall_ms"]["p95"]), "same"
        )
    small, large = data.values()
    ratio = large["wall_ms"]["p50"] / small["wall_ms"]["p50"] if small["wall_ms"]["p50"] else None
    met = ratio is not None and ratio < 1.5 and large["queries"] == small["queries"]
    section.add(
        "large ÷ small (wall p50), statements equal",
        "—" if ratio is None else f"{ratio:.2f}x",
        target="< 1.5x",
        met=met,
    )
    section.note(
        "the claim's host choice scans the region's host rows (1,000 at most here), never its allocations"
    )
    return section, data
