"""Every change of a firewall raises its version; a worker records the version it applied, by a
compare-and-swap that never lowers it, and only when the firewall did not change while it applied (then it
applies again). Workers take turns per server: a second worker that comes while the first applies leaves it
to the first, which sees the change and applies it too. A worker for a server without a host records at
once (the domain's definition reads the firewall when it comes); a host that is down keeps the firewall
pending with the reason for staff, and what keeps failing goes to the back of the periodic job's line."""

from __future__ import annotations

import contextlib
import threading

import pytest
from django.db import connections

from hypervisor import driver
from hypervisor.models import Host
from panel.models import Firewall
from panel.servers import filter_sync, firewall
from tests import factories
from tests.conftest import wait_for

SSH = [{"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24"]}]
WEB = [{"protocol": "tcp", "ports": "443", "sources": ["0.0.0.0/0", "::/0"]}]


@pytest.fixture
def server(customer, catalog):
    return factories.make_server(customer, catalog)


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_applied_an_older_version_applies_again_and_a_second_worker_leaves_it_to_it(
    customer, server, settings, tmp_path, monkeypatch, purge_queue
):
    first = firewall.set_firewall(server, SSH, "drop", customer)
    assert first.pending

    # Worker A reads the first version and is held right after applying it, with the server's turn.
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

    # Meanwhile the customer changes the firewall; worker B, sent for it, finds A's turn and leaves.
    settings.FAULT_PAUSE_AT = ""
    second = firewall.set_firewall(server, WEB, "drop", customer)
    assert second.version > first.version
    assert firewall.apply_pending(server.pk) is False
    row = Firewall.objects.get(pk=server.pk)
    assert row.pending and row.applied_version < first.version and row.applied_at is None

    # A goes on: the firewall changed under it, so it applies again (the newest) and records that.
    marker.with_name(marker.name + ".go").write_text("")
    thread.join(timeout=30)
    assert result["a"] is True
    row = Firewall.objects.get(pk=server.pk)
    assert row.applied_version == row.version == second.version
    assert row.inbound == WEB and not row.pending and row.apply_error == ""
    assert firewall.apply_pending(server.pk) is True  # the turn is free again


@pytest.mark.django_db(transaction=True)
def test_a_change_made_while_the_turn_was_taken_is_applied_by_the_worker_that_held_it(
    customer, server, monkeypatch, purge_queue
):
    """A worker re-reads the version after it lets go of the turn: a change that came after its last
    check, whose own worker found the turn taken and left, is applied by it then."""
    firewall.set_firewall(server, SSH, "drop", customer)
    held, go, written = threading.Event(), threading.Event(), []
    real_apply = driver.apply_network_filter
    real_turn = filter_sync._apply_turn

    @contextlib.contextmanager
    def turn_held_to_the_end(server_id):
        with real_turn(server_id) as mine:
            yield mine
            if mine and not written[1:]:  # A's first turn ends: held here, after its last check
                held.set()
                assert go.wait(timeout=30)

    def recording_apply(host, spec):
        written.append(spec.inbound)
        real_apply(host, spec)

    monkeypatch.setattr(filter_sync, "_apply_turn", turn_held_to_the_end)
    monkeypatch.setattr(driver, "apply_network_filter", recording_apply)
    result = {}

    def worker_a() -> None:
        try:
            result["a"] = firewall.apply_pending(server.pk)
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker_a)
    thread.start()
    assert held.wait(timeout=30)
    first = Firewall.objects.get(pk=server.pk)
    assert not first.pending  # A recorded what it applied, and still holds the turn

    second = firewall.set_firewall(server, WEB, "drop", customer)
    monkeypatch.setattr(filter_sync, "_apply_turn", real_turn)
    assert firewall.apply_pending(server.pk) is False  # B: the turn is taken
    go.set()
    thread.join(timeout=30)
    assert result["a"] is True
    row = Firewall.objects.get(pk=server.pk)
    assert row.applied_version == row.version == second.version and not row.pending
    assert [len(inbound) for inbound in written] == [1, 1] and written[-1][0].ports == "443"


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
    assert row.pending and row.apply_error == "the host is down" == filter_sync.HOST_DOWN

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
