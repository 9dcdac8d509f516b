"""Probing a host records what it is and how big it is, or an error with a readable reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from hypervisor import hosts
from hypervisor.models import Host
from tests import factories

pytestmark = pytest.mark.django_db


def node_uri(tmp_path: Path, cores: int, memory_mib: int) -> str:
    return factories.node_uri(tmp_path, cores=cores, memory_mib=memory_mib)


def test_the_simulated_host_becomes_ready_with_its_facts():
    host = factories.make_host("test:///default")
    assert host.state == Host.State.READY, host.status_reason
    assert host.status_reason == ""
    assert host.domain_type == "test"
    assert host.vcpus_total == 16  # the test driver's default node: 2 NUMA cells of 8 CPUs
    assert host.memory_mib_total == 3072
    assert 0 < host.memory_mib_free <= host.memory_mib_total
    assert host.disk_gib_total == 100  # the simulated dir pool has 100 GiB
    assert host.libvirt_version.count(".") == 2 and host.libvirt_version[0].isdigit()
    assert host.hypervisor_version.startswith("TEST")
    assert host.arch
    assert host.last_probed_at is not None
    assert host.capacity["memory_mib"] == 3072 - host.reserved_memory_mib


def test_a_host_of_a_given_size_reports_that_size(tmp_path):
    host = factories.make_host(node_uri(tmp_path, cores=6, memory_mib=12288))
    assert host.state == Host.State.READY, host.status_reason
    assert host.vcpus_total == 6
    assert host.memory_mib_total == 12288
    assert host.capacity == {
        "vcpus": 6 * 4,  # default cpu_allocation_ratio 4.0
        "memory_mib": 12288 - 512,  # default reserved 512 MiB, ratio 1.0
        "disk_gib": host.disk_gib_total,
    }


def test_probing_again_updates_the_facts(tmp_path):
    uri = node_uri(tmp_path, cores=2, memory_mib=2048)
    host = factories.make_host(uri)
    Host.objects.filter(pk=host.pk).update(vcpus_total=999, memory_mib_total=1, state=Host.State.ERROR)
    host = hosts.probe_host(host.pk)
    assert (host.state, host.vcpus_total, host.memory_mib_total) == (Host.State.READY, 2, 2048)


def test_an_unreachable_host_ends_in_error_with_a_readable_reason():
    host = factories.make_host("qemu+tcp://127.0.0.1:1/system")  # nothing listens on port 1
    assert host.state == Host.State.ERROR
    assert "connect" in host.status_reason.lower()
    assert "127.0.0.1" in host.status_reason
    assert host.last_probed_at is not None
    assert host.vcpus_total == 0 and host.domain_type == ""
    assert not host.schedulable


def test_a_missing_storage_pool_other_than_default_is_an_error():
    host = factories.make_host("test:///default", storage_pool="missing-pool")
    assert host.state == Host.State.ERROR
    assert host.status_reason == "no storage pool named missing-pool"


def test_a_missing_network_is_an_error():
    host = factories.make_host("test:///default", network="no-such-net")
    assert host.state == Host.State.ERROR
    assert host.status_reason == "no network named no-such-net"


@pytest.mark.parametrize("uri", ["http://x", "ftp://host/system", "  "])
def test_unsupported_uris_are_rejected(uri):
    with pytest.raises(ValidationError) as raised:
        hosts.validate_uri(uri)
    assert raised.value.code == "invalid_uri"


def test_registering_a_host_with_an_unsupported_uri_records_nothing():
    with pytest.raises(ValidationError):
        hosts.register_host("web", "http://x", factories.make_region())
    assert not Host.objects.exists()


@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu+ssh://root@kvm1.example.com/system",
        "qemu+tls://kvm1/system",
        "test:///default",
    ],
)
def test_supported_uris_are_accepted(uri):
    assert hosts.validate_uri(f" {uri} ") == uri
