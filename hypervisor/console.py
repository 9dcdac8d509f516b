"""How the console proxy reaches a domain's consoles.

- Graphical: QEMU's VNC server listens on the host's loopback with the domain's own password
  (`secrets.console_password`). A local host's is reached directly; a qemu+ssh host's through an SSH
  tunnel with the panel's key (`ssh -W`, `credentials.ssh_tunnel_command`). Other transports (qemu+tls)
  have no way to it: their graphical console is refused with a reason, the serial console works.
- Serial: libvirt's console stream (`virDomainOpenConsole`), which works over every transport. Each
  console gets a libvirt connection of its own, so that a blocked read never holds a connection the
  workers' calls use.

Nothing here is async: the proxy runs these calls in threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import libvirt
from lxml import etree

from . import connection, credentials, secrets
from .connection import HypervisorError
from .models import Host
from .xml.domain import Graphics

__all__ = ["SerialConsole", "VncEndpoint", "vnc_endpoint"]

READ_SIZE = 16 * 1024


@dataclass(frozen=True)
class VncEndpoint:
    """Where a domain's VNC server is and how to get there: `tunnel` is the command whose standard input and
    output are the connection (a qemu+ssh host), or empty for a direct TCP connection."""

    address: str
    port: int
    password: str
    tunnel: tuple[str, ...] = ()


def is_local(host: Host) -> bool:
    """Whether the host is this machine's libvirtd (qemu:///system, qemu+unix), whose loopback is ours."""
    parts = urlsplit(host.uri)
    return parts.scheme.lower() in ("qemu", "qemu+unix") and not parts.hostname


def _check_reachable(host: Host) -> None:
    if host.transport == "test":
        raise HypervisorError("a simulated host has no consoles; servers on real hosts do")


def vnc_endpoint(host: Host, domain_uuid: str) -> VncEndpoint:
    """The running domain's VNC server (HypervisorError when the domain has none or is not running, or the
    host's transport cannot reach it)."""
    _check_reachable(host)
    if not is_local(host) and host.transport != "qemu+ssh":
        raise HypervisorError(
            "the graphical console needs a local or qemu+ssh host; use the serial console on this host"
        )

    def work(conn: libvirt.virConnect) -> Graphics | None:
        domain = conn.lookupByUUIDString(domain_uuid)
        if not domain.isActive():
            raise HypervisorError("the server is not running")
        devices = etree.fromstring(domain.XMLDesc(0).encode()).find("devices")
        for element in devices.findall("graphics") if devices is not None else []:
            if element.get("type") == "vnc":
                return Graphics.from_element(element)
        return None

    graphics = connection.run(host, work)
    if graphics is None or graphics.port <= 0:
        raise HypervisorError("the server has no graphical console; rebuild it or use the serial console")
    address = graphics.listen or "127.0.0.1"
    if address in ("0.0.0.0", "::"):
        address = "127.0.0.1"
    tunnel = () if is_local(host) else tuple(credentials.ssh_tunnel_command(host, address, graphics.port))
    return VncEndpoint(address, graphics.port, secrets.console_password(domain_uuid), tunnel)


class SerialConsole:
    """The domain's serial console through libvirt's console stream, on a connection of its own. `read`
    blocks until the guest prints (b"" at the end); `write` sends keystrokes; `close` ends both (from any
    thread: a blocked `read` returns)."""

    def __init__(self, host: Host, domain_uuid: str):
        _check_reachable(host)
        uri = credentials.connect_uri(host)  # reads the database: call it outside libvirt's threads
        connection.ensure_event_loop()
        self._closed = threading.Event()
        try:
            self._conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise connection.describe(exc, host.uri) from exc
        try:
            domain = self._conn.lookupByUUIDString(domain_uuid)
            if not domain.isActive():
                raise HypervisorError("the server is not running")
            self._stream = self._conn.newStream(0)
            # FORCE: a console left open elsewhere (another tab) is taken over rather than refused.
            domain.openConsole(None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        except libvirt.libvirtError as exc:
            self._conn.close()
            raise connection.describe(exc, host.uri) from exc
        except BaseException:
            self._conn.close()
            raise

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def read(self) -> bytes:
        if self._closed.is_set():
            return b""
        try:
            data = self._stream.recv(READ_SIZE)
        except libvirt.libvirtError:
            if self._closed.is_set():
                return b""
            raise
        if isinstance(data, int):  # only a non-blocking stream says "would block" (-2)
            raise HypervisorError("the serial console stream failed")
        return bytes(data)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._closed.is_set():
            sent = self._stream.send(bytes(view))
            if sent < 0:
                raise HypervisorError("the serial console refused input")
            view = view[sent:]

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._stream.abort()
        except libvirt.libvirtError:
            pass
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass
