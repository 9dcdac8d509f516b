"""Scenario 3: a seeded installation at scale (10,000 customers, 1,000 hosts, 100,000 servers with their
allocations, addresses, operations, subscriptions, invoices, usage samples and activity: bench.scale_seed),
and the latency and SQL queries per request of the main pages and API lists, through Django's test client
(the whole middleware stack, in production settings).

Each page's row also records this process's CPU and the time spent waiting for Postgres per request
(bench/results.json: cpu_ms, sql_ms). To measure again without seeding: keep the seeded database
(BENCH_KEEP_DB=1 BENCH_SCENARIOS=3 python -m bench.run), then `python -m bench.pages` with the same
BENCH_DATABASE_URL; BENCH_PAGES="?status=,customer page" chooses pages by words of their labels."""

from __future__ import annotations

import sys
import time

from .common import Section, env_int, env_str, fmt_ms, log, summary
from .scale_seed import World, seed

__all__ = ["World", "kept_world", "measure", "seed"]


# Measuring.

WEB_TARGET_MS = 100.0


def _pages(world: World) -> list[tuple[str, str, object, dict]]:
    """(label, url, user, extra headers) of every page and API list measured: the customer's, the staff's
    and the admins' main pages (with the live fragments they poll and the list filters staff use), and the
    API lists of the contract."""
    server, host, pool = world.server, world.hosts[0], world.pools[0]
    customer, staff, admin = world.customer, world.staff, world.admin
    htmx = {"HTTP_HX_REQUEST": "true"}
    return [
        ("customer dashboard /servers/", "/servers/", customer, {}),
        ("  its live rows (htmx, every 3 s)", "/servers/", customer, htmx),
        ("server page /servers/<id>/", f"/servers/{server.pk}/", customer, {}),
        ("  its live status (htmx, polled)", f"/servers/{server.pk}/status/", customer, htmx),
        ("billing /billing/ (balance, invoices)", "/billing/", customer, {}),
        ("invoice page /billing/invoices/<id>/", f"/billing/invoices/{world.invoice_id}/", customer, {}),
        ("account activity /account/activity/", "/account/activity/", customer, {}),
        ("staff server list /staff/servers/", "/staff/servers/", staff, {}),
        ("  its live rows (htmx, every 5 s)", "/staff/servers/", staff, htmx),
        ("  searched ?q=<hostname>", "/staff/servers/?q=web-0421", staff, {}),
        ("  filtered ?status=error", "/staff/servers/?status=error", staff, {}),
        ("staff server page /staff/servers/<id>/", f"/staff/servers/{server.pk}/", staff, {}),
        ("customer list /staff/customers/", "/staff/customers/", staff, {}),
        ("  searched ?q=<email>", "/staff/customers/?q=customer0042", staff, {}),
        ("customer page /staff/customers/<id>/", f"/staff/customers/{customer.pk}/", staff, {}),
        ("staff invoice page /staff/invoices/<id>/", f"/staff/invoices/{world.invoice_id}/", staff, {}),
        ("overdue invoices /staff/overdue/", "/staff/overdue/", staff, {}),
        ("host list /staff/hosts/", "/staff/hosts/", admin, {}),
        ("  searched ?q=<name>", "/staff/hosts/?q=kvm-04", admin, {}),
        ("admin host page /staff/hosts/<id>/", f"/staff/hosts/{host.pk}/", admin, {}),
        ("IP pools /staff/ip-pools/", "/staff/ip-pools/", admin, {}),
        ("IP pool page /staff/ip-pools/<id>/", f"/staff/ip-pools/{pool.pk}/", admin, {}),
        ("audit log /staff/audit/", "/staff/audit/", admin, {}),
        ("GET /api/v1/servers/", "/api/v1/servers/", customer, {}),
        ("GET /api/v1/servers/<id>/actions/", f"/api/v1/servers/{server.pk}/actions/", customer, {}),
        ("GET /api/v1/invoices/", "/api/v1/invoices/", customer, {}),
        ("GET /api/v1/account/", "/api/v1/account/", customer, {}),
        ("GET /api/v1/account/events/", "/api/v1/account/events/", customer, {}),
        ("GET /api/v1/plans/", "/api/v1/plans/", customer, {}),
        ("GET /api/v1/regions/", "/api/v1/regions/", customer, {}),
        ("GET /api/v1/images/", "/api/v1/images/", customer, {}),
        ("GET /api/v1/admin/servers/", "/api/v1/admin/servers/", staff, {}),
        ("GET /api/v1/admin/customers/", "/api/v1/admin/customers/", staff, {}),
        ("GET /api/v1/admin/hosts/", "/api/v1/admin/hosts/", admin, {}),
        ("GET /api/v1/admin/ip-pools/", "/api/v1/admin/ip-pools/", admin, {}),
        ("GET /api/v1/admin/events/", "/api/v1/admin/events/", admin, {}),
    ]


def _chosen(pages: list[tuple[str, str, object, dict]]) -> list[tuple[str, str, object, dict]]:
    """The pages whose label contains one of BENCH_PAGES' comma-separated words, case-insensitively (all of
    them without it): BENCH_PAGES="?status=,customer page" measures two."""
    words = [w.strip().lower() for w in env_str("BENCH_PAGES", "").split(",") if w.strip()]
    if not words:
        return pages
    return [page for page in pages if any(word in page[0].lower() for word in words)]


def measure(world: World) -> tuple[Section, dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    requests = env_int("BENCH_REQUESTS", 30)
    warmups = env_int("BENCH_WARMUPS", 3)
    sizes = world.sizes
    section = Section(
        f"3. Pages and API at scale: {sizes['customers']} customers, {sizes['hosts']} hosts, "
        f"{sizes['servers']} "
        f"servers, {sizes['usage_samples']} usage samples, {sizes['invoices']} invoices "
        f"({requests} requests each after {warmups} warm-ups)"
    )
    if world.seed_seconds:
        section.note(f"seeded in {world.seed_seconds:.1f} s with bulk inserts")
    else:
        section.note("measured on a kept database seeded before (python -m bench.pages)")
    results = {}
    clients = {}
    for label, url, user, headers in _chosen(_pages(world)):
        api = url.startswith("/api/")
        key = (user.pk, api)
        if key not in clients:
            client = Client()
            if not api:
                _login(client, user)
            clients[key] = client
        client = clients[key]
        if api:
            headers = {**headers, "HTTP_AUTHORIZATION": f"Bearer {world.tokens[user.pk]}"}
        for _ in range(warmups):
            client.get(url, **headers)
        timings, cpu, sql, statuses = [], [], [], set()
        waited = _SqlTimer()
        with connection.execute_wrapper(waited):
            for _ in range(requests):
                start, start_cpu, start_sql = time.perf_counter(), time.process_time(), waited.seconds
                response = client.get(url, **headers)
                cpu.append((time.process_time() - start_cpu) * 1000)
                timings.append((time.perf_counter() - start) * 1000)
                sql.append((waited.seconds - start_sql) * 1000)
                statuses.add(response.status_code)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, **headers)
        rows = _rows_shown(response, api)
        stats, cpu_stats, sql_stats = summary(timings), summary(cpu), summary(sql)
        met = stats["p95"] is not None and stats["p95"] < WEB_TARGET_MS and statuses == {200}
        section.add(
            label,
            f"{len(queries)} queries" + (f", {rows} rows" if rows is not None else ""),
            fmt_ms(stats["p50"]),
            fmt_ms(stats["p95"]),
            "p95 < 100 ms",
            met,
        )
        if statuses != {200}:
            section.note(f"{label}: HTTP {sorted(statuses)}")
        results[label.strip()] = {
            "url": url,
            "queries": len(queries),
            "rows": rows,
            "ms": stats,
            "cpu_ms": cpu_stats,  # this process's CPU (middleware, view, ORM, templates), not Postgres'
            "sql_ms": sql_stats,  # waiting for Postgres' answers (statements and fetching their rows)
            "statuses": sorted(statuses),
            "sql": [q["sql"][:300] for q in queries.captured_queries],
        }
        log(
            f"scenario 3: {label.strip()}: p50 {stats['p50']:.1f} ms, p95 {stats['p95']:.1f} ms, "
            f"{len(queries)} queries; CPU p50 {cpu_stats['p50']:.1f} ms, p95 {cpu_stats['p95']:.1f} ms; "
            f"SQL p50 {sql_stats['p50']:.1f} ms, p95 {sql_stats['p95']:.1f} ms"
        )
    section.note(
        "query counts are pinned by tests/panel/test_main_pages_have_constant_query_counts.py (3 vs 30 rows)"
    )
    return section, {"sizes": sizes, "seed_s": world.seed_seconds, "pages": results}


class _SqlTimer:
    """A connection.execute_wrapper adding up the seconds spent in the database driver's execute."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start


def _login(client, user) -> None:
    """A session of the user that has shown the second factor (staff and admins have one), as the two-step
    login leaves it."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is not None:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()


def _rows_shown(response, api: bool) -> int | None:
    if api:
        try:
            body = response.json()
        except ValueError:
            return None
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            return len(body["results"])
        return len(body) if isinstance(body, list) else None
    return response.content.count(b"<tr") - response.content.count(b"<thead") or None


# Measuring again on a kept database (BENCH_KEEP_DB=1 kept the seeded one).

KEPT_TOKEN_NAME = "bench-kept"  # noqa: S105 (a token's name, not a secret)


def kept_world() -> World:
    """The World of a database bench.scale_seed seeded and a run kept, read back from its rows: the same
    customer, server, host, pool and invoice the run measured."""
    from billing.models import Invoice
    from hypervisor.models import Host, IPPool
    from panel.models import Server, UsageSample, User

    customers = User.objects.filter(role=User.Role.CUSTOMER, email__endswith="@bench.example")
    customer = customers.order_by("pk").first()
    if customer is None:
        raise SystemExit(
            "the database holds no seeded installation: run BENCH_KEEP_DB=1 BENCH_SCENARIOS=3 first"
        )
    world = World(
        staff=User.objects.get(email="staff@bench.example"),
        admin=User.objects.get(email="admin@bench.example"),
        customer=customer,
        hosts=[Host.objects.order_by("pk").first()],
        pools=[IPPool.objects.order_by("pk").first()],
        # The seed's first running server of the customer (rows are named in the order they were made).
        server=Server.objects.filter(owner=customer, status=Server.Status.RUNNING).order_by("name").first(),
        invoice_id=Invoice.objects.filter(account=customer)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first(),
    )
    world.sizes = {
        "customers": customers.count(),
        "hosts": Host.objects.count(),
        "servers": Server.objects.exclude(status=Server.Status.DELETED).count(),
        "usage_samples": UsageSample.objects.count(),
        "invoices": Invoice.objects.count(),
    }
    return world


def _issue_tokens(world: World) -> None:
    from panel.models import ApiToken

    for user in (world.customer, world.staff, world.admin):
        world.tokens[user.pk] = ApiToken.issue(user, KEPT_TOKEN_NAME)[1]


def main() -> int:
    """python -m bench.pages: scenario 3's measurement again on the kept bench database (BENCH_DATABASE_URL),
    without seeding; BENCH_PAGES chooses pages, BENCH_REQUESTS and BENCH_WARMUPS the repetitions."""
    from .run import configure_environment, quiet_this_process

    configure_environment()
    import django

    django.setup()
    quiet_this_process()
    from .common import render_table

    world = kept_world()
    api = any(url.startswith("/api/") for _label, url, _user, _headers in _chosen(_pages(world)))
    if api:
        _issue_tokens(world)
    try:
        section, _data = measure(world)
    finally:
        if api:
            from panel.models import ApiToken

            ApiToken.objects.filter(name=KEPT_TOKEN_NAME).delete()
    print(render_table([section]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
