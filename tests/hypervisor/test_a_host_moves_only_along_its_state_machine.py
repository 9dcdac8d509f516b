"""Every state a host goes through on its real paths is a move hypervisor.host_states allows, and every
move of the table is one the code makes: registered, probed while it does not answer (error) and again
when it does (ready), re-probed, down and back under the health check, re-probed once down. The host is
libvirt's simulated driver reading a node file of the test's own; removing the file is a host that stops
answering (a fresh connection cannot open)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypervisor import connection, host_states, hosts
from hypervisor.host_states import DisabledBy, State
from hypervisor.models import Host
from tests import factories
from tests.column_history import ColumnHistory

pytestmark = pytest.mark.django_db


class SimulatedHost:
    """A test:///… host whose libvirtd can be stopped and started."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.uri = factories.node_uri(directory)

    def stop(self) -> None:
        Path(self.uri.removeprefix("test://")).unlink()
        connection.forget(self.uri)

    def start(self) -> None:
        assert factories.node_uri(self.directory) == self.uri


@pytest.fixture
def node(tmp_path, settings):
    settings.HOST_DOWN_AFTER_FAILURES = 1
    simulated = SimulatedHost(tmp_path)
    yield simulated
    connection.forget(simulated.uri)


def probe(host: Host) -> Host:
    return hosts.probe_host(host.pk)


def check(host: Host) -> Host:
    """One health check as the beat task runs it, on a fresh read of the row."""
    hosts.check_host(Host.objects.get(pk=host.pk))
    return Host.objects.get(pk=host.pk)


def test_every_state_is_in_the_table_and_the_models_use_the_vocabulary():
    assert set(host_states.TRANSITIONS) == set(State)
    assert all(targets <= set(State) for targets in host_states.TRANSITIONS.values())
    assert {value for value, _label in Host._meta.get_field("state").choices} == set(host_states.TRANSITIONS)
    assert {value for value, _label in Host._meta.get_field("disabled_by").choices} == set(DisabledBy)
    assert (Host.State, Host.DisabledBy) == (State, DisabledBy)
    assert set(host_states.CHECKED) <= set(State)
    assert host_states.may_move(State.READY, State.READY)
    assert not host_states.may_move(State.NEW, State.READY)  # only through a probe
    assert not host_states.may_move(State.ERROR, State.DOWN)  # the health check ignores failed hosts


def test_a_host_moves_only_along_the_table_and_makes_every_move_of_it(node):
    with ColumnHistory(Host, "state") as history:
        host = factories.make_host(node.uri, probe=False)
        assert host.state == State.NEW

        node.stop()
        assert probe(host).state == State.ERROR
        node.start()
        assert probe(host).state == State.READY
        assert probe(host).state == State.READY  # an admin probes it again

        assert check(host).state == State.READY
        node.stop()
        down = check(host)
        assert (down.state, down.disabled_by) == (State.DOWN, DisabledBy.HEALTH)
        assert check(host).state == State.DOWN
        node.start()
        back = check(host)
        assert (back.state, back.disabled_by) == (State.READY, DisabledBy.NOBODY)

        node.stop()
        assert check(host).state == State.DOWN
        node.start()
        assert probe(host).state == State.READY  # probed while down: ready without waiting for a check

    assert history.inserted() == [State.NEW]
    assert history.trail(host.pk) == [
        "new",
        "probing",
        "error",
        "probing",
        "ready",
        "probing",
        "ready",
        "down",
        "ready",
        "down",
        "probing",
        "ready",
    ]
    for old, new in history.moves():
        assert host_states.may_move(old, new), f"{old} -> {new}"
    every_move = {(old, new) for old, targets in host_states.TRANSITIONS.items() for new in targets}
    assert set(history.moves()) == every_move
