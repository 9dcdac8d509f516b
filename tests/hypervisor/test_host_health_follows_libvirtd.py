"""The health check follows a real libvirtd: a host that stops answering goes down and is disabled
automatically, actions on its servers fail fast, and it comes back (re-enabled) when it answers again,
unless an admin disabled it by hand.

The host is reached through a small Unix-socket proxy to the real libvirtd that the test starts and stops:
stopping it closes the listener and every forwarded connection, as if libvirtd died.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import libvirt
import pytest

from hypervisor import connection, hosts
from hypervisor.models import Host
from panel.models import Operation, Server
from panel.servers import actions, operations
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db]

LIBVIRTD_SOCKET = "/var/run/libvirt/libvirt-sock"
HOST_DOWN = str(actions.HOST_DOWN_MESSAGE)


class UnixProxy:
    """Forwards each connection to `path` to libvirtd's socket, until stopped. Without a target it accepts
    connections and never answers: a host that hangs."""

    def __init__(self, path: Path, target: str | None = LIBVIRTD_SOCKET):
        self.path = path
        self.target = target
        self.listener: socket.socket | None = None
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.accepted = 0

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        listener.settimeout(0.1)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Close the listener (the socket file stays: connecting is refused) and every open connection."""
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        with self.lock:
            sockets, self.open = self.open, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                client, _address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setblocking(True)
            if self.target is None:
                with self.lock:
                    self.open.add(client)
                    self.accepted += 1
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update((client, upstream))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def libvirtd():
    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError as exc:
        pytest.fail(
            f"no libvirtd answers at qemu:///system (start it with `virtlogd -d; libvirtd -d`): {exc}"
        )
    yield conn
    conn.close()


@pytest.fixture
def proxy(tmp_path, libvirtd):
    proxy = UnixProxy(tmp_path / "libvirt-sock")
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def private_pool(tmp_path, libvirtd):
    """A storage pool of the test's own (so that probing touches no pool other tests use), removed after."""
    name = f"health-test-{uuid.uuid4().hex[:8]}"
    yield name, str(tmp_path / "pool")
    try:
        pool = libvirtd.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    if pool.isActive():
        pool.destroy()
    pool.undefine()


@pytest.fixture
def host(proxy, private_pool, settings) -> Host:
    settings.HOST_CHECK_TIMEOUT = 3
    settings.HOST_DOWN_AFTER_FAILURES = 1
    pool_name, pool_path = private_pool
    uri = f"qemu+unix:///system?socket={proxy.path}"
    host = factories.make_host(uri=uri, storage_pool=pool_name, storage_pool_path=pool_path)
    assert host.state == Host.State.READY, host.status_reason
    assert host.libvirt_version and host.vcpus_total > 0
    assert proxy.accepted >= 1  # it really went through the proxy
    yield host
    connection.forget(uri)


def check(host: Host) -> Host:
    """One health check as the beat task runs it (on a fresh read of the host row); returns the host."""
    fresh = Host.objects.get(pk=host.pk)
    started = time.monotonic()
    hosts.check_host(fresh)
    assert time.monotonic() - started < 5, "the health check hung"
    fresh.refresh_from_db()
    return fresh


def server_on(host: Host, status: str = Server.Status.RUNNING) -> Server:
    region, plan, image = factories.make_catalog()
    return Server.objects.create(
        name=f"web{uuid.uuid4().hex[:6]}",
        owner=factories.make_user(),
        plan=plan,
        image=image,
        region=host.region,
        host=host,
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
        status=status,
    )


def test_a_host_that_stops_answering_goes_down_and_comes_back(host, proxy, api):
    assert check(host).state == Host.State.READY
    assert check(host).last_seen_at is not None
    busy = server_on(host)
    queued = actions.request_action(busy, Operation.Type.REBOOT, busy.owner)  # waiting for a worker
    idle = server_on(host)

    proxy.stop()
    down = check(host)
    assert down.state == Host.State.DOWN
    assert (down.enabled, down.disabled_by) == (False, Host.DisabledBy.HEALTH)
    assert down.disabled_reason == "Disabled automatically: the host stopped answering."
    assert "connection" in down.status_reason.lower()  # refused, or reset if it died under the cached one
    assert not down.schedulable
    still_down = check(host)  # the next check reconnects and is refused: the reason says so
    assert (still_down.state, still_down.enabled) == (Host.State.DOWN, False)
    assert still_down.status_reason == "connection refused by the local libvirtd"

    # A customer's action is refused at once with a clear message.
    started = time.monotonic()
    response = api(idle.owner).post(f"/api/v1/servers/{idle.pk}/actions/", {"type": "reboot"}, format="json")
    assert time.monotonic() - started < 2
    assert response.status_code == 409
    assert response.json()["error"] == {"code": "conflict", "message": HOST_DOWN}
    assert not Operation.objects.filter(server=idle).exists()

    # An operation queued before the host went down fails fast when a worker picks it up.
    started = time.monotonic()
    operations.execute(str(queued.pk))
    assert time.monotonic() - started < 2
    queued.refresh_from_db()
    assert (queued.status, queued.error) == (Operation.Status.FAILED, HOST_DOWN)
    busy.refresh_from_db()
    assert (busy.task, busy.status) == (None, Server.Status.RUNNING)

    # libvirtd answers again: the host is ready and enabled again, and takes actions.
    proxy.start()
    back = check(host)
    assert back.state == Host.State.READY
    assert (back.enabled, back.disabled_by, back.disabled_reason) == (True, "", "")
    assert back.status_reason == "" and back.failed_checks == 0
    assert back.schedulable
    response = api(idle.owner).post(f"/api/v1/servers/{idle.pk}/actions/", {"type": "reboot"}, format="json")
    assert response.status_code == 202


def test_a_host_an_admin_disabled_stays_disabled_through_down_and_back(host, proxy):
    hosts.set_enabled(host.pk, False, "moving racks")

    proxy.stop()
    down = check(host)
    assert down.state == Host.State.DOWN
    assert (down.enabled, down.disabled_by, down.disabled_reason) == (
        False,
        Host.DisabledBy.ADMIN,
        "moving racks",
    )

    proxy.start()
    for _ in range(2):
        back = check(host)
        assert back.state == Host.State.READY
        assert (back.enabled, back.disabled_by, back.disabled_reason) == (
            False,
            Host.DisabledBy.ADMIN,
            "moving racks",
        )
    assert not back.schedulable

    hosts.set_enabled(host.pk, True)
    assert Host.objects.get(pk=host.pk).schedulable


def test_a_host_goes_down_only_after_the_configured_number_of_failed_checks(host, proxy, settings):
    settings.HOST_DOWN_AFTER_FAILURES = 2
    proxy.stop()
    once = check(host)
    assert (once.state, once.enabled, once.failed_checks) == (Host.State.READY, True, 1)
    twice = check(host)
    assert (twice.state, twice.enabled, twice.failed_checks) == (Host.State.DOWN, False, 2)
    # Refused (a new connection) or lost (a cached one whose end the keepalive had not noticed yet): which of
    # the two the second check meets depends on timing; either is a host that does not answer.
    assert twice.status_reason in (
        "connection refused by the local libvirtd",
        "the connection to the local libvirtd was lost",
    )

    proxy.start()
    back = check(host)
    assert (back.state, back.enabled, back.failed_checks) == (Host.State.READY, True, 0)


def test_one_failed_check_is_forgotten_when_the_next_one_succeeds(host, proxy, settings):
    settings.HOST_DOWN_AFTER_FAILURES = 2
    proxy.stop()
    assert check(host).failed_checks == 1
    proxy.start()
    ok = check(host)
    assert (ok.state, ok.failed_checks) == (Host.State.READY, 0)
    proxy.stop()
    assert check(host).state == Host.State.READY  # one failure again, not the second in a row


def test_a_dead_cached_connection_is_replaced_instead_of_failing_the_check(host, proxy):
    """libvirtd restarted between two checks: the cached connection is dead, but libvirtd answers."""
    assert check(host).state == Host.State.READY  # the connection is now cached
    proxy.stop()
    time.sleep(0.2)  # libvirtd is restarted between two checks (they run every HOST_CHECK_INTERVAL)
    proxy.start()
    after = check(host)
    assert (after.state, after.enabled, after.failed_checks) == (Host.State.READY, True, 0), (
        after.status_reason
    )


def test_a_hanging_host_is_marked_down_without_starving_the_checks_of_other_hosts(host, tmp_path, settings):
    settings.HOST_CHECK_TIMEOUT = 0.3
    hole = UnixProxy(tmp_path / "hanging-sock", target=None)
    hole.start()
    hanging = factories.make_host(uri=f"qemu+unix:///system?socket={hole.path}", probe=False)
    Host.objects.filter(pk=hanging.pk).update(state=Host.State.READY)
    try:
        first = check(hanging)
        assert first.state == Host.State.DOWN
        assert first.status_reason == "the host did not answer within 0.3 seconds"
        for _ in range(9):  # the beat keeps checking it while it hangs (every HOST_CHECK_INTERVAL)
            assert check(hanging).state == Host.State.DOWN
        assert hole.accepted >= 1
        healthy = check(host)
        assert (healthy.state, healthy.enabled) == (Host.State.READY, True), healthy.status_reason
    finally:
        hole.stop()
        connection.forget(hanging.uri)
