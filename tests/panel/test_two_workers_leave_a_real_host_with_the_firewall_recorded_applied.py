"""Two workers sent for the same server's firewall, on a real libvirtd: worker A reads the first version
and is slow in libvirt; the customer saves a second version; worker B, sent for it, finds A's turn and
leaves it to A; A's write of the first version lands, A sees the version moved and applies again, and the
host fails. What the panel records then agrees with the filter on the host: the second version is not
recorded applied while the host has the first (without turns, B would have written and recorded the second,
and A's late write would have put the first back for good). Once the host answers again, a worker applies
the second version and records it.

Only the filter's definition is inspected (the server has no domain): no traffic is sent."""

from __future__ import annotations

import threading

import libvirt
import pytest
from django.db import connections

from hypervisor import driver
from hypervisor.models import Host
from hypervisor.xml.nwfilter import parse
from panel.models import Firewall
from panel.servers import firewall
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
URI = "qemu:///system"
UNREACHABLE = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"

SSH = [{"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24"]}]
WEB = [{"protocol": "tcp", "ports": "443", "sources": ["0.0.0.0/0"]}]


def ports_on_the_host(conn: libvirt.virConnect, server) -> list[str]:
    """The tcp ports the server's filter on the host lets in."""
    written = parse(conn.nwfilterLookupByName(f"vps-{server.id}").XMLDesc(0))
    return [
        entry.match.attributes["dstportstart"]
        for entry in written.entries
        if getattr(entry, "match", None) is not None and entry.match.protocol == "tcp"
    ]


def test_the_version_recorded_applied_is_the_one_the_host_has(customer, catalog, monkeypatch, purge_queue):
    region = factories.make_region()
    host = factories.make_host(uri=URI, region=region, force_emulation=True)
    assert host.state == Host.State.READY, host.status_reason
    server = factories.make_server(
        customer, catalog, name="raced", region=region, host=host, mac="52:54:00:7e:30:03"
    )
    first = firewall.set_firewall(server, SSH, "drop", customer)

    in_libvirt, land = threading.Event(), threading.Event()
    real_apply = driver.apply_network_filter
    calls = []

    def slow_first_call(target, spec):
        calls.append([rule.ports for rule in spec.inbound])
        if len(calls) == 1:  # A's first call: slow, it lands only when the test says
            in_libvirt.set()
            assert land.wait(timeout=60)
        real_apply(target, spec)

    monkeypatch.setattr(driver, "apply_network_filter", slow_first_call)
    result = {}

    def worker_a() -> None:
        try:
            result["a"] = firewall.apply_pending(server.pk)
        finally:
            connections.close_all()

    conn = libvirt.open(URI)
    thread = threading.Thread(target=worker_a)
    try:
        thread.start()
        assert in_libvirt.wait(timeout=60), "worker A did not reach libvirt"

        # The customer saves a second version; worker B is sent for it while A is in libvirt.
        second = firewall.set_firewall(server, WEB, "drop", customer)
        assert second.version > first.version
        assert firewall.apply_pending(server.pk) is False  # B: A has the turn
        assert calls == [["22"]]  # B wrote nothing

        # The host stops answering; A's write of the first version lands, then its second round fails.
        Host.objects.filter(pk=host.pk).update(uri=UNREACHABLE)
        land.set()
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert result["a"] is False
        assert calls == [["22"], ["443"]]
        assert ports_on_the_host(conn, server) == ["22"]  # the host has the first version
        row = Firewall.objects.get(pk=server.pk)
        assert row.pending and row.applied_version < second.version and row.apply_error

        # The host answers again: a worker (the periodic job's) applies the second version and records it.
        Host.objects.filter(pk=host.pk).update(uri=URI)
        assert firewall.apply_pending(server.pk) is True
        assert ports_on_the_host(conn, server) == ["443"]
        row = Firewall.objects.get(pk=server.pk)
        assert row.applied_version == row.version == second.version and row.apply_error == ""
    finally:
        land.set()
        thread.join(timeout=60)
        Host.objects.filter(pk=host.pk).update(uri=URI)
        host.refresh_from_db()
        driver.remove_network_filters(host, server.id)
        conn.close()
    assert f"vps-{server.id}" not in filter_names()


def filter_names() -> list[str]:
    conn = libvirt.open(URI)
    try:
        return [found.name() for found in conn.listAllNWFilters()]
    finally:
        conn.close()
