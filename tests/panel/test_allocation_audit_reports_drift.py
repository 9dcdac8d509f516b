"""The periodic allocation audit recomputes what each host should hold from the servers and reports every
difference to admins as a Notice, resolving it once fixed; and the placement weigher follows its setting."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from hypervisor import claims, placement
from hypervisor.models import Allocation, Host
from panel.infrastructure import allocation_audit as audit
from panel.models import Notice, Operation, Server
from panel.servers import actions, operations
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def ordered(customer):
    """Three servers ordered the normal way (each placed and claimed) on a roomy region."""
    region, plan, image = factories.make_catalog()
    host = factories.set_host_size(factories.make_host(region=region))
    servers = [
        actions.order_server(customer, name=f"web{n}", plan=plan, image=image, region=region)
        for n in range(3)
    ]
    return {"host": host, "servers": servers, "region": region}


def open_notices() -> dict[str, str]:
    return dict(
        Notice.objects.filter(key__startswith=audit.PREFIX, resolved_at__isnull=True).values_list(
            "key", "message"
        )
    )


def test_no_drift_means_no_notice(ordered):
    assert audit.audit_allocations() == []
    assert open_notices() == {}


def test_each_kind_of_drift_is_reported_and_resolved_once_fixed(ordered):
    host = ordered["host"]
    missing, changed, _fine = ordered["servers"]
    Allocation.objects.filter(consumer_uuid=missing.pk).delete()
    Allocation.objects.filter(consumer_uuid=changed.pk).update(vcpus=7)
    orphan = uuid.uuid4()
    Allocation.objects.create(consumer_uuid=orphan, host=host, vcpus=1, memory_mib=256, disk_gib=1)

    messages = audit.audit_allocations()

    assert len(messages) == 3
    notices = open_notices()
    assert set(notices) == {
        f"allocation-drift:{missing.pk}",
        f"allocation-drift:{changed.pk}",
        f"allocation-drift:{orphan}",
    }
    assert notices[f"allocation-drift:{missing.pk}"] == (
        f"Server web0 ({missing.pk}) holds no allocation on {host.name}."
    )
    assert notices[f"allocation-drift:{changed.pk}"] == (
        f"Server web1 ({changed.pk}) should hold 1 vCPU/256 MiB/1 GiB on {host.name} "
        f"but its allocation is 7 vCPU/256 MiB/1 GiB on {host.name}."
    )
    assert notices[f"allocation-drift:{orphan}"] == (
        f"An allocation on {host.name} belongs to no live server (consumer {orphan})."
    )
    assert audit.audit_allocations() == messages  # reporting again refreshes, never duplicates
    assert Notice.objects.filter(key__startswith=audit.PREFIX).count() == 3

    # An admin fixes two of them: those notices are resolved, the third stays open.
    Allocation.objects.create(consumer_uuid=missing.pk, host=host, vcpus=1, memory_mib=256, disk_gib=1)
    Allocation.objects.filter(consumer_uuid=orphan).delete()
    assert len(audit.audit_allocations()) == 1
    assert set(open_notices()) == {f"allocation-drift:{changed.pk}"}
    resolved = Notice.objects.get(key=f"allocation-drift:{missing.pk}")
    assert resolved.resolved_at is not None

    Allocation.objects.filter(consumer_uuid=changed.pk).update(vcpus=1)
    assert audit.audit_allocations() == []
    assert open_notices() == {}
    assert Notice.objects.filter(key__startswith=audit.PREFIX, resolved_at__isnull=False).count() == 3


def test_an_allocation_on_the_wrong_host_is_drift(ordered):
    server = ordered["servers"][0]
    other = factories.set_host_size(factories.make_host(region=ordered["region"]))
    Allocation.objects.filter(consumer_uuid=server.pk).update(host=other)
    assert set(open_notices()) == set()
    audit.audit_allocations()
    assert f"on {other.name}." in open_notices()[f"allocation-drift:{server.pk}"]


def test_a_deleted_server_that_still_holds_an_allocation_is_drift(ordered):
    server = ordered["servers"][0]
    Server.objects.filter(pk=server.pk).update(status=Server.Status.DELETED)
    audit.audit_allocations()
    assert set(open_notices()) == {f"allocation-drift:{server.pk}"}


def test_a_drift_that_comes_back_is_reopened(ordered):
    server = ordered["servers"][0]
    Allocation.objects.filter(consumer_uuid=server.pk).update(vcpus=3)
    audit.audit_allocations()
    Allocation.objects.filter(consumer_uuid=server.pk).update(vcpus=1)
    audit.audit_allocations()
    assert open_notices() == {}
    Allocation.objects.filter(consumer_uuid=server.pk).update(vcpus=3)
    audit.audit_allocations()
    assert set(open_notices()) == {f"allocation-drift:{server.pk}"}
    assert Notice.objects.filter(key=f"allocation-drift:{server.pk}").count() == 1


def test_a_server_whose_create_failed_is_not_drift(ordered):
    server = ordered["servers"][0]
    create = Operation.objects.get(server=server, type=Operation.Type.CREATE)
    Host.objects.filter(pk=server.host_id).update(state=Host.State.DOWN)
    operations.execute(str(create.pk))  # fails fast: the host is down
    server.refresh_from_db()
    assert server.status == Server.Status.ERROR
    assert not Allocation.objects.filter(consumer_uuid=server.pk).exists()  # released on failure
    Host.objects.filter(pk=server.host_id).update(state=Host.State.READY)

    assert audit.audit_allocations() == []
    assert open_notices() == {}


# The placement weigher.


@pytest.fixture
def fuller_and_emptier():
    """Two hosts of 8 GiB: the first holds 6 GiB already (2 GiB free), the second nothing (8 GiB free)."""
    region = factories.make_region()
    fuller = factories.set_host_size(factories.make_host(region=region, probe=False), memory_mib=8192)
    emptier = factories.set_host_size(factories.make_host(region=region, probe=False), memory_mib=8192)
    Allocation.objects.create(consumer_uuid=uuid.uuid4(), host=fuller, vcpus=1, memory_mib=6144, disk_gib=1)
    return region, fuller, emptier


NEED = placement.Resources(vcpus=1, memory_mib=1024, disk_gib=1)


def test_the_pack_weigher_fills_the_fuller_host_first(settings, fuller_and_emptier):
    settings.PLACEMENT_WEIGHER = "pack"
    region, fuller, emptier = fuller_and_emptier
    assert placement.candidates(region, NEED) == [fuller, emptier]
    assert claims.claim(uuid.uuid4(), region, NEED) == fuller
    assert claims.claim(uuid.uuid4(), region, NEED) == fuller  # 1 GiB left there: still the fuller
    assert claims.claim(uuid.uuid4(), region, NEED) == emptier  # fuller is full now


def test_the_spread_weigher_places_on_the_emptier_host(settings, fuller_and_emptier):
    settings.PLACEMENT_WEIGHER = "spread"
    region, fuller, emptier = fuller_and_emptier
    assert placement.candidates(region, NEED) == [emptier, fuller]
    for _ in range(6):  # the emptier host has more free memory until it is down to 2 GiB too
        assert claims.claim(uuid.uuid4(), region, NEED) == emptier
    assert placement.candidates(region, NEED) == [fuller, emptier]  # a tie: the older host first


@pytest.mark.django_db
def test_the_audit_reports_host_counters_that_differ_from_the_allocations():
    """The trigger keeps the counters; rows changed behind it (triggers disabled) show up as drift."""
    region = factories.make_region()
    host = factories.make_host(region=region, probe=False)
    Allocation.objects.create(consumer_uuid=uuid.uuid4(), host=host, vcpus=1, memory_mib=256, disk_gib=1)
    assert not [m for m in audit.audit_allocations() if host.name in m and "counts" in m]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE hypervisor_host SET used_vcpus = 5 WHERE id = %s", [host.pk])
    messages = [m for m in audit.audit_allocations() if "counts" in m]
    assert len(messages) == 1
    assert host.name in messages[0] and "5 vCPU/256 MiB/1 GiB" in messages[0] and "1 vCPU" in messages[0]
