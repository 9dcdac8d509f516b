"""The console proxy on the real libvirtd: a token from `POST servers/{id}/console/` opens the server's
graphical console once (the RFB handshake through the proxy: version, security type None towards the
client, the domain's own VNC password towards QEMU, and QEMU's ServerInit); the same token a second time,
an expired one and one from a foreign page origin are refused; other customers get 404, a stopped server
409; an open console closes when its server changes owner or is suspended, and each opening is in the
activity log."""

from __future__ import annotations

import struct
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from panel.console.models import ConsoleSession
from panel.models import ActivityEvent, Server
from tests import factories
from tests.conftest import wait_for
from tests.console_proxy import running_proxy

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy(settings, tmp_path, libvirtd):
    with running_proxy(settings, tmp_path) as url:
        yield url


@pytest.fixture
def server(libvirtd, kvm_host, customer):
    plan = factories.make_plan(slug="console-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    return factories.make_real_server(
        customer, plan=plan, image=factories.make_image(), region=kvm_host.region, name="console.example.com"
    )


def open_console(api, user, server, console_type="vnc"):
    return api(user).post(f"/api/v1/servers/{server.id}/console/", {"type": console_type}, format="json")


class Received:
    """A websocket's binary messages read as a byte stream."""

    def __init__(self, websocket):
        self.websocket, self.buffer = websocket, b""

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self.websocket.recv(timeout=15)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data


def rfb_handshake(websocket) -> tuple[list[int], int, int, bytes]:
    """The client's side of RFB 3.8 through the proxy: (security types offered, width, height, name)."""
    stream = Received(websocket)
    assert stream.read(12) == b"RFB 003.008\n"
    websocket.send(b"RFB 003.008\n")
    count = stream.read(1)[0]
    types = list(stream.read(count))
    websocket.send(bytes([1]))  # None: the token was the authentication
    assert struct.unpack(">I", stream.read(4)) == (0,)
    websocket.send(bytes([1]))  # ClientInit, shared
    width, height = struct.unpack(">HH", stream.read(4))
    stream.read(16)  # pixel format
    (length,) = struct.unpack(">I", stream.read(4))
    return types, width, height, stream.read(length)


def refusal(url: str, **options) -> str:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10, **options)
    assert refused.value.response.status_code == 403
    return refused.value.response.body.decode()


def test_a_token_opens_the_graphical_console_once(proxy, server, customer, api):
    response = open_console(api, customer, server)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["type"] == "vnc"
    assert body["url"].startswith(proxy + "/")
    expires_at = timezone.datetime.fromisoformat(body["expires_at"])
    assert timezone.now() < expires_at <= timezone.now() + timedelta(seconds=60)
    # Only the token's hash is stored.
    token = body["url"].rsplit("/", 1)[1]
    assert not ConsoleSession.objects.filter(token_hash=token).exists()

    with connect(body["url"], open_timeout=10, max_size=None) as websocket:
        types, width, height, name = rfb_handshake(websocket)
    assert types == [1]
    assert width > 0 and height > 0
    assert name == f"QEMU ({server.domain_name})".encode()  # QEMU's ServerInit: past its password

    assert "used already" in refusal(body["url"])
    session = ConsoleSession.objects.get()
    assert session.connected_at is not None and session.connected_ip == "127.0.0.1"
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.CONSOLE_OPENED)
    assert (event.account, event.actor, event.ip) == (customer, customer, "127.0.0.1")
    assert "graphical console" in event.text


def test_expired_and_foreign_origin_tokens_are_refused(proxy, server, customer, api):
    late = open_console(api, customer, server).json()["url"]
    ConsoleSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "expired" in refusal(late)

    url = open_console(api, customer, server).json()["url"]
    assert "origin" in refusal(url, origin="https://evil.example")
    # The panel's own page origin is accepted (the token was not used up by the refusal).
    with connect(url, open_timeout=10, origin="http://testserver") as websocket:
        assert websocket.recv(timeout=15).startswith(b"RFB 003.008")


def test_other_customers_get_404_and_a_stopped_server_409(proxy, server, customer, other_customer, api):
    assert open_console(api, other_customer, server).status_code == 404
    assert open_console(api, other_customer, server, "serial").status_code == 404
    Server.objects.filter(pk=server.pk).update(status=Server.Status.STOPPED)
    response = open_console(api, customer, server)
    assert response.status_code == 409
    assert "not running" in response.json()["error"]["message"]
    assert open_console(api, customer, server, "telnet").status_code == 400
    assert not ConsoleSession.objects.exists()


@pytest.mark.parametrize("change", ["owner", "suspension"])
def test_an_open_console_closes_when_the_server_changes_owner_or_is_suspended(
    proxy, server, customer, other_customer, api, change
):
    url = open_console(api, customer, server).json()["url"]
    with connect(url, open_timeout=10) as websocket:
        rfb_handshake(websocket)
        if change == "owner":
            Server.objects.filter(pk=server.pk).update(owner=other_customer)
        else:
            Server.objects.filter(pk=server.pk).update(status=Server.Status.SUSPENDED)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while time.monotonic() - started < 20:
                websocket.recv(timeout=20)
    code, reason = (4003, "no longer this account's") if change == "owner" else (4001, "suspended")
    assert closed.value.rcvd.code == code
    assert reason in closed.value.rcvd.reason
    session = wait_for(lambda: ConsoleSession.objects.filter(ended_at__isnull=False).first(), timeout=10)
    assert session.end_reason == closed.value.rcvd.reason
