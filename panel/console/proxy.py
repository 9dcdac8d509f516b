"""The console proxy: a websocket server (the `websockets` library, asyncio) that browsers and API clients
connect to with a single-use console token, and that joins them to the server's graphical console (RFB,
binary frames) or serial console (raw bytes).

For each connection: the token is redeemed during the HTTP upgrade (`sessions.redeem`: once, before it
expires, from the page's origin), so a refused one gets a plain HTTP 403 with the reason; then the guest's
console is opened (`hypervisor.console`); for VNC both RFB handshakes are done here (`rfb`); then bytes are
pumped both ways until either end closes. Every few seconds the open consoles are checked against the
database, and those whose server was suspended, deleted or given to another account are closed (codes
4001 to 4003, `sessions.Closing`; 4004 when the guest's end went away, 1011 when it could not be reached).
Database and libvirt calls run in threads; the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import threading
from http import HTTPStatus
from types import SimpleNamespace

from django.conf import settings
from django.db import close_old_connections
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hypervisor import console as guest_console
from hypervisor.connection import HypervisorError
from hypervisor.models import Host
from panel.console import rfb, sessions
from panel.request_context import client_ip
from panel.servers.models import Server

log = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0  # seconds between checks of the open consoles against the database
GUEST_FAILED = 1011  # websocket close code: the guest's console could not be reached
BROWSER_CLOSED = sessions.Closing(1000, "the browser closed the console")


async def in_thread(function, *args):
    """Run a function that uses the database (and maybe libvirt) in a thread, with fresh connections."""

    def call():
        close_old_connections()
        try:
            return function(*args)
        finally:
            close_old_connections()

    return await asyncio.to_thread(call)


def _token(path: str) -> str:
    """The token: the last segment of the path (/console/<token>, whatever the TLS proxy's prefix)."""
    return path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _address(connection: ServerConnection, request: Request) -> str | None:
    remote = connection.remote_address[0] if connection.remote_address else None
    meta = {"REMOTE_ADDR": remote or "", "HTTP_X_FORWARDED_FOR": request.headers.get("X-Forwarded-For", "")}
    return client_ip(SimpleNamespace(META=meta))


def _guest(server_id: str) -> tuple[Host, str]:
    server = Server.objects.select_related("host").get(pk=server_id)
    if server.host is None:
        raise HypervisorError("the server has no host")
    return server.host, str(server.id)


def _subprotocol(_connection: ServerConnection, offered) -> str | None:
    """Old noVNC asks for the "binary" subprotocol; other clients ask for none."""
    return "binary" if "binary" in offered else None


class MessageReader:
    """Websocket messages read as a byte stream (for the RFB handshake with the browser)."""

    def __init__(self, websocket: ServerConnection):
        self.websocket = websocket
        self.buffer = bytearray()

    async def readexactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            message = await self.websocket.recv()
            self.buffer += message.encode() if isinstance(message, str) else message
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def rest(self) -> bytes:
        data, self.buffer = bytes(self.buffer), bytearray()
        return data


class MessageWriter:
    def __init__(self, websocket: ServerConnection):
        self.websocket = websocket
        self.pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.pending.append(data)

    async def drain(self) -> None:
        if self.pending:
            data, self.pending = b"".join(self.pending), []
            await self.websocket.send(data)


class ConsoleProxy:
    def __init__(self) -> None:
        self.grants: dict[ServerConnection, sessions.Grant] = {}
        self.open: dict[int, ServerConnection] = {}
        self.closed_by_panel: dict[int, sessions.Closing] = {}

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        try:
            grant = await in_thread(
                sessions.redeem, _token(request.path), origin, _address(connection, request)
            )
        except sessions.Refused as refused:
            log.info("console refused: %s", refused)
            return connection.respond(HTTPStatus.FORBIDDEN, f"{refused}\n")
        self.grants[connection] = grant
        return None

    async def handle(self, websocket: ServerConnection) -> None:
        grant = self.grants.pop(websocket)
        self.open[grant.session_id] = websocket
        reason = "closed"
        try:
            if grant.type == "vnc":
                reason = await self._vnc(websocket, grant)
            else:
                reason = await self._serial(websocket, grant)
        except (HypervisorError, rfb.RfbError, OSError) as exc:
            reason = f"the console could not be opened: {exc}"
            log.warning("console %s: %s", grant.session_id, reason)
            await websocket.close(GUEST_FAILED, reason[:120])
        except ConnectionClosed:
            reason = BROWSER_CLOSED.reason
        finally:
            self.open.pop(grant.session_id, None)
            if grant.session_id in self.closed_by_panel:
                reason = self.closed_by_panel.pop(grant.session_id).reason
            await in_thread(sessions.end, grant.session_id, reason)

    async def _vnc(self, websocket: ServerConnection, grant: sessions.Grant) -> str:
        """Join the browser to the guest's VNC server; the reason it ended."""
        host, domain_uuid = await in_thread(_guest, grant.server_id)
        endpoint = await in_thread(guest_console.vnc_endpoint, host, domain_uuid)
        process = None
        if endpoint.tunnel:
            process = await asyncio.create_subprocess_exec(
                *endpoint.tunnel,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            reader, writer = process.stdout, process.stdin
        else:
            reader, writer = await asyncio.open_connection(endpoint.address, endpoint.port)
        try:
            await asyncio.wait_for(rfb.log_in_to_server(reader, writer, endpoint.password), 15)
            browser = MessageReader(websocket)
            await asyncio.wait_for(rfb.greet_client(browser, MessageWriter(websocket)), 30)
            leftover = browser.rest()
            if leftover:
                writer.write(leftover)

            async def to_guest() -> sessions.Closing:
                async for message in websocket:
                    writer.write(message.encode() if isinstance(message, str) else message)
                    await writer.drain()
                return BROWSER_CLOSED

            async def to_browser() -> sessions.Closing:
                while data := await reader.read(64 * 1024):
                    await websocket.send(data)
                return sessions.GUEST_ENDED

            return await self._pump(websocket, to_guest(), to_browser())
        finally:
            writer.close()
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def _serial(self, websocket: ServerConnection, grant: sessions.Grant) -> str:
        """Join the browser to the guest's serial console; the reason it ended."""
        host, domain_uuid = await in_thread(_guest, grant.server_id)
        serial = await in_thread(guest_console.SerialConsole, host, domain_uuid)
        try:

            async def to_guest() -> sessions.Closing:
                async for message in websocket:
                    await asyncio.to_thread(
                        serial.write, message.encode() if isinstance(message, str) else message
                    )
                return BROWSER_CLOSED

            # A thread of its own reads the console (a blocking read would hold one of the pool's threads
            # for as long as the console is open); what it reads reaches the loop through a queue.
            loop = asyncio.get_running_loop()
            received: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=64)

            def read_forever() -> None:
                while not serial.closed:
                    try:
                        data = serial.read()
                    except BaseException as exc:  # handed to the loop, which ends the console
                        data = exc
                    try:
                        future = asyncio.run_coroutine_threadsafe(received.put(data), loop)
                    except RuntimeError:  # the loop is gone
                        return
                    while True:  # the queue is full while the browser is slow: wait, unless it closed
                        try:
                            future.result(timeout=1)
                            break
                        except concurrent.futures.TimeoutError:
                            if serial.closed:
                                future.cancel()
                                return
                        except concurrent.futures.CancelledError:
                            return
                    if not isinstance(data, bytes) or not data:
                        return

            reader = threading.Thread(target=read_forever, name=f"serial-{grant.session_id}", daemon=True)
            reader.start()

            async def to_browser() -> sessions.Closing:
                while True:
                    data = await received.get()
                    if isinstance(data, BaseException):
                        raise data
                    if not data:
                        return sessions.GUEST_ENDED
                    await websocket.send(data)

            return await self._pump(websocket, to_guest(), to_browser())
        finally:
            serial.close()

    async def _pump(self, websocket: ServerConnection, *directions) -> str:
        """Run both directions until one ends; close the websocket with that end's code; the reason."""
        tasks = [asyncio.ensure_future(direction) for direction in directions]
        try:
            done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            try:
                closing = done.pop().result()
            except ConnectionClosed:
                closing = BROWSER_CLOSED
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
        if websocket.close_code is None:
            await websocket.close(closing.code, closing.reason)
        return closing.reason

    async def watch(self) -> None:
        """Close the consoles whose server was suspended, deleted or given away, or whose user was
        deactivated."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            if not self.open:
                continue
            try:
                reasons = await in_thread(sessions.closing, list(self.open))
            except Exception:  # the database is away for a moment: try again at the next check
                log.exception("checking the open consoles failed")
                continue
            for session_id, closing in reasons.items():
                websocket = self.open.get(session_id)
                if websocket is not None:
                    log.info("closing console %s: %s", session_id, closing.reason)
                    self.closed_by_panel[session_id] = closing
                    await websocket.close(closing.code, closing.reason)


async def serve_forever(bind: str | None = None) -> None:
    """Listen on `bind` (HOST:PORT, default CONSOLE_BIND) until SIGTERM or SIGINT."""
    host, _, port = (bind or settings.CONSOLE_BIND).rpartition(":")
    proxy = ConsoleProxy()
    # The database and libvirt calls of many consoles (short ones: serial reads have threads of their own).
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="console")
    )
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    async with serve(
        proxy.handle,
        host.strip("[]") or "127.0.0.1",
        int(port),
        process_request=proxy.process_request,
        select_subprotocol=_subprotocol,
        max_size=1024 * 1024,
        ping_interval=20,
        ping_timeout=20,
        server_header="vpspanel-console",
    ):
        watcher = asyncio.ensure_future(proxy.watch())
        log.info("console proxy listening on %s:%s", host, port)
        print(f"Console proxy listening on {host}:{port}", flush=True)
        try:
            await stop
        finally:
            watcher.cancel()
