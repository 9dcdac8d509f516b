"""Every change of a firewall raises its version; a worker records the version it applied, by a
compare-and-swap that never lowers it, and only when the firewall did not change while it applied (what it
wrote could be older than what a second worker wrote meanwhile: it applies again). A worker for a server
without a host records at once (the domain's definition reads the firewall when it comes); a host that is
down keeps the firewall pending with the reason for staff."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from hypervisor.models import Host
from panel.models import Firewall
from panel.servers import firewall
from tests import factories
from tests.conftest import wait_for

SSH = [{"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24"]}]
WEB = [{"protocol": "tcp", "ports": "443", "sources": ["0.0.0.0/0", "::/0"]}]


@pytest.fixture
def server(customer, catalog):
    return factories.make_server(customer, catalog)


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_applied_an_older_version_applies_again_and_never_lowers_the_record(
    customer, server, settings, tmp_path, monkeypatch, purge_queue
):
    first = firewall.set_firewall(server, SSH, "drop", customer)
    assert first.pending

    # Worker A reads the first version and is held right after applying it.
    marker = tmp_path / "marker"
    monkeypatch.setenv("PANEL_FAULT_MARKER", str(marker))
    settings.FAULT_PAUSE_AT = "firewall:applied"
    result = {}

    def worker_a() -> None:
        try:
            result["a"] = firewall.apply_pending(server.pk)
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker_a)
    thread.start()
    wait_for(marker.exists, timeout=20, message="worker A did not reach its pause point")

    # Meanwhile the customer changes the firewall and worker B applies the newer version.
    settings.FAULT_PAUSE_AT = ""
    second = firewall.set_firewall(server, WEB, "drop", customer)
    assert second.version > first.version
    assert firewall.apply_pending(server.pk) is True
    row = Firewall.objects.get(pk=server.pk)
    assert row.applied_version == second.version and row.applied_at is not None

    # A goes on: the firewall changed under it, so it applies again (the newest) and lowers nothing.
    marker.with_name(marker.name + ".go").write_text("")
    thread.join(timeout=30)
    assert result["a"] is True
    row = Firewall.objects.get(pk=server.pk)
    assert row.applied_version == row.version == second.version
    assert row.inbound == WEB and not row.pending and row.apply_error == ""


@pytest.mark.django_db
def test_each_change_raises_the_version_and_applying_twice_records_once(customer, server):
    row = firewall.set_firewall(server, SSH, "drop", customer)
    assert firewall.apply_pending(server.pk) is True
    applied = Firewall.objects.get(pk=server.pk)
    assert applied.applied_version == row.version and not applied.pending
    assert firewall.apply_pending(server.pk) is True  # a message delivered twice
    assert Firewall.objects.get(pk=server.pk).applied_at == applied.applied_at

    again = firewall.set_firewall(server, WEB, "drop", customer)
    assert again.version == row.version + 1 and again.pending
    reset = firewall.reset_firewall(server, customer)
    assert reset.version == row.version + 2 and reset.inbound == [] and reset.default_inbound == "accept"


@pytest.mark.django_db
def test_without_a_host_it_is_recorded_at_once_and_a_down_host_keeps_it_pending(customer, catalog, server):
    unplaced = factories.make_server(customer, catalog, name="unplaced", status="pending", host=None)
    firewall.set_firewall(unplaced, SSH, "drop", customer)
    assert firewall.apply_pending(unplaced.pk) is True
    assert not Firewall.objects.get(pk=unplaced.pk).pending

    firewall.set_firewall(server, SSH, "drop", customer)
    Host.objects.filter(pk=server.host_id).update(state=Host.State.DOWN)
    assert firewall.apply_pending(server.pk) is False
    row = Firewall.objects.get(pk=server.pk)
    assert row.pending and row.apply_error == "the host is down"

    Host.objects.filter(pk=server.host_id).update(state=Host.State.READY)
    assert firewall.apply_pending(server.pk) is True
    row = Firewall.objects.get(pk=server.pk)
    assert not row.pending and row.apply_error == ""


@pytest.mark.django_db
def test_an_address_change_raises_the_version_of_each_server_it_touches(
    customer, catalog, server, django_capture_on_commit_callbacks
):
    other = factories.make_server(customer, catalog, name="web2")
    firewall.set_firewall(other, SSH, "drop", customer)
    firewall.apply_pending(other.pk)
    before = Firewall.objects.get(pk=other.pk).version
    with django_capture_on_commit_callbacks() as callbacks:
        firewall.addresses_changed([server.pk, other.pk, server.pk])
    assert len(callbacks) == 2  # one apply task per server, sent after the commit
    assert Firewall.objects.get(pk=server.pk).pending  # its first row: no rules, accept, to apply
    assert Firewall.objects.get(pk=server.pk).inbound == []
    changed = Firewall.objects.get(pk=other.pk)
    assert changed.version == before + 1 and changed.pending and changed.inbound == SSH
