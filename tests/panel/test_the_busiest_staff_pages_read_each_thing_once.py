"""The four staff pages that were slowest at 100,000 servers read each thing once: the IP pool page counts
from the pool's kept counts and names the holders in the addresses' query, the staff server list reads no
addresses and counts without sorting, the customer page reads the quota once and the usage in two
statements, the host page lists its servers without joining every account. What they show stays the same."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hypervisor import ipam
from hypervisor.models import IPAddress
from panel.accounts import quotas
from panel.infrastructure.ip_pool_views import ADDRESSES_PER_PAGE
from panel.models import BackupPolicy, Operation, Quota, Server, Snapshot
from tests import factories

pytestmark = pytest.mark.django_db


def _get(client, url: str):
    client.get(url)  # a first request may write once (a session's second factor, a token's use)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response, [query["sql"] for query in queries.captured_queries]


def _touching(statements: list[str], table: str) -> list[str]:
    return [sql for sql in statements if f'"{table}"' in sql]


def test_the_ip_pool_page_counts_from_the_kept_counts_and_names_each_holder(
    client, admin_user, customer, catalog
):
    pool = ipam.create_pool(catalog["region"], "pub", "10.30.0.0/24", "10.30.0.1")
    server = factories.make_server(customer, catalog, "mail.example")
    first, second, third = IPAddress.objects.filter(pool=pool).order_by("value")[:3]
    IPAddress.objects.filter(pk=first.pk).update(consumer_uuid=server.pk)
    IPAddress.objects.filter(pk=second.pk).update(consumer_uuid=server.pk, role=IPAddress.Role.ADDITIONAL)
    stray = uuid.uuid4()  # an address held by an id no server of the panel has
    IPAddress.objects.filter(pk=third.pk).update(consumer_uuid=stray)
    client.force_login(admin_user)

    response, statements = _get(client, f"/staff/ip-pools/{pool.pk}/")

    addresses = _touching(statements, "hypervisor_ipaddress")
    # The pool with its counts (the cooling ones from their partial index), then one page of addresses with
    # their holders' names: nothing counts the pool's addresses.
    assert len(addresses) == 2
    assert not any(
        re.search(r'COUNT\(\*\) AS "__count" FROM "hypervisor_ipaddress"', sql) for sql in statements
    )
    assert len(_touching(statements, "panel_server")) == 1  # inside the addresses' statement
    total = IPAddress.objects.filter(pool=pool).count()
    assert response.context["usage"] == {"total": total, "used": 3, "cooling": 0, "reserved": 0}
    assert response.context["page"].paginator.count == total
    rows = response.context["rows"]
    assert len(rows) == min(total, ADDRESSES_PER_PAGE)
    assert [row["server"] for row in rows[:3]] == ["mail.example", "mail.example", None]
    html = response.content.decode()
    assert html.count('href="/staff/servers/?q=mail.example"') == 2 and str(stray) in html
    assert html.count("badge--ip-used") == 3 and "additional" in html


def test_the_filtered_staff_server_list_reads_the_servers_once_and_no_addresses(
    client, staff, customer, catalog
):
    ok = factories.make_server(customer, catalog, "ok.example")
    broken = factories.make_server(customer, catalog, "broken.example", status=Server.Status.ERROR)
    client.force_login(staff)

    response, statements = _get(client, "/staff/servers/?status=error")

    servers = _touching(statements, "panel_server")
    assert len(servers) == 2  # the bounded count and the page
    count = next(sql for sql in servers if "COUNT(" in sql)
    assert "ORDER BY" not in count
    assert not _touching(statements, "hypervisor_ipaddress")  # the list shows no addresses
    html = response.content.decode()
    assert "broken.example" in html and "ok.example" not in html
    # The rows' links are the pages' own URLs.
    assert f'href="{reverse("staff-server", args=[broken.pk])}"' in html
    assert f'href="{reverse("staff-customer", args=[customer.pk])}"' in html
    assert f'href="{reverse("host-detail", args=[catalog["host"].pk])}"' in html
    assert f'<span class="badge__dot" aria-hidden="true"></span>{Server.Status.ERROR.label}</span>' in html
    assert ok.pk


def test_the_customer_page_reads_the_quota_once_and_the_usage_in_two_statements(
    client, staff, customer, catalog
):
    Quota.objects.create(user=customer, servers=5, snapshots=4, extra_ipv4=3, backups=20)
    first = factories.make_server(customer, catalog, "one.example")
    factories.make_server(customer, catalog, "two.example")
    factories.make_server(customer, catalog, "gone.example", status=Server.Status.DELETED)
    Snapshot.objects.create(server=first, name="before", libvirt_name="snap-1")
    Operation.objects.create(server=first, type=Operation.Type.SNAPSHOT, status=Operation.Status.RUNNING)
    pool = ipam.create_pool(catalog["region"], "pub", "10.31.0.0/28", "10.31.0.1")
    extra = IPAddress.objects.filter(pool=pool).order_by("value").first()
    IPAddress.objects.filter(pk=extra.pk).update(consumer_uuid=first.pk, role=IPAddress.Role.ADDITIONAL)
    BackupPolicy.objects.create(server=first, enabled=True, retention=7)
    client.force_login(staff)

    response, statements = _get(client, f"/staff/customers/{customer.pk}/")

    assert len(_touching(statements, "panel_quota")) == 1  # with the customer's row
    assert len(_touching(statements, "panel_snapshot")) == 1  # snapshots, addresses and backups together
    used = {row["name"]: (row["used"], row["limit"]) for row in response.context["quota"]}
    assert used == {
        "servers": (2, 5), "vcpus": (2, None), "memory_mib": (512, None), "disk_gib": (2, None),
        "snapshots": (2, 4), "extra_ipv4": (1, 3), "backups": (7, 20),
    }  # fmt: skip
    assert used == {
        name: (value, quotas.limits_of(customer)[name]) for name, value in quotas.usage(customer).items()
    }
    assert response.context["form"].initial["servers"] == 5
    assert response.context["lift_amount"] is None  # shown only under new-account limits


def test_a_customer_without_a_quota_row_is_shown_the_defaults_and_gets_one_when_staff_save(
    client, staff, customer, catalog
):
    client.force_login(staff)
    response, _statements = _get(client, f"/staff/customers/{customer.pk}/")
    assert response.context["form"].initial == quotas.default_limits()
    assert not Quota.objects.filter(user=customer).exists()  # reading the page writes nothing
    form = {name: "" for name in Quota.RESOURCES} | {"servers": "3"}
    assert client.post(f"/staff/customers/{customer.pk}/", form).status_code == 302
    assert Quota.objects.get(user=customer).servers == 3


def test_the_host_page_lists_its_servers_with_their_owners_without_joining_every_account(
    client, admin_user, customer, catalog
):
    for n in range(3):
        factories.make_server(customer, catalog, f"web{n}.example", vcpus=n + 1)
    client.force_login(admin_user)

    response, statements = _get(client, f"/staff/hosts/{catalog['host'].pk}/")

    page = next(sql for sql in statements if '"panel_server"."name"' in sql)
    assert 'JOIN "panel_user"' not in page  # the owner's email is read for the page's rows only
    html = response.content.decode()
    assert html.count(customer.email) == 3 and "1 vCPU ·" in html and "3 vCPUs ·" in html
    assert f'href="{reverse("staff-customer", args=[customer.pk])}"' in html
