"""The two RFB (VNC) handshakes the console proxy speaks (RFC 6143), so that the browser never needs the
domain's VNC password: towards QEMU the proxy is the client and answers the VNC authentication challenge;
towards the browser it is the server and offers security type None (the single-use console token was the
browser's authentication). After both handshakes the bytes go through unchanged, starting with the
client's ClientInit.
"""

from __future__ import annotations

import struct
from typing import Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC = 2


class RfbError(Exception):
    """The other end does not speak RFB as expected, or refused the authentication."""


class Reader(Protocol):
    async def readexactly(self, n: int) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


def vnc_response(password: str, challenge: bytes) -> bytes:
    """VNC authentication: the 16-byte challenge encrypted with DES (ECB), keyed by the password's first
    8 bytes (zero-padded) with each byte's bits reversed, as VNC has always done."""
    key = password.encode("latin-1")[:8].ljust(8, b"\0")
    key = bytes(int(f"{byte:08b}"[::-1], 2) for byte in key)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # K1=K2=K3: single DES
    return encryptor.update(challenge) + encryptor.finalize()


async def _reason(reader: Reader) -> str:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    return (await reader.readexactly(min(length, 4096))).decode("utf-8", "replace")


async def log_in_to_server(reader: Reader, writer: Writer, password: str) -> None:
    """Be the client of QEMU's VNC server up to the end of its security handshake (RFB 3.8)."""
    version = await reader.readexactly(12)
    if not version.startswith(b"RFB 003."):
        raise RfbError(f"not an RFB server: {version!r}")
    writer.write(VERSION)
    await writer.drain()
    count = (await reader.readexactly(1))[0]
    if count == 0:
        raise RfbError(f"the VNC server refused the connection: {await _reason(reader)}")
    types = await reader.readexactly(count)
    if SECURITY_VNC in types:
        writer.write(bytes([SECURITY_VNC]))
        await writer.drain()
        challenge = await reader.readexactly(16)
        writer.write(vnc_response(password, challenge))
    elif SECURITY_NONE in types:
        writer.write(bytes([SECURITY_NONE]))
    else:
        raise RfbError(f"the VNC server offers no security type the proxy speaks: {list(types)}")
    await writer.drain()
    (result,) = struct.unpack(">I", await reader.readexactly(4))
    if result != 0:
        raise RfbError(f"the VNC server refused the password: {await _reason(reader)}")


async def greet_client(reader: Reader, writer: Writer) -> None:
    """Be the VNC server to the browser up to the end of the security handshake: security type None, in
    whichever of RFB 3.3, 3.7 and 3.8 the client asks for."""
    writer.write(VERSION)
    await writer.drain()
    version = await reader.readexactly(12)
    if not version.startswith(b"RFB 003."):
        raise RfbError(f"not an RFB client: {version!r}")
    minor = int(version[8:11]) if version[8:11].isdigit() else 0
    if minor < 7:  # 3.3: the server names the security type
        writer.write(struct.pack(">I", SECURITY_NONE))
        await writer.drain()
        return
    writer.write(bytes([1, SECURITY_NONE]))
    await writer.drain()
    chosen = (await reader.readexactly(1))[0]
    if chosen != SECURITY_NONE:
        raise RfbError(f"the client chose security type {chosen}, which was not offered")
    if minor >= 8:  # 3.8 sends the result of every security type, None included
        writer.write(struct.pack(">I", 0))
        await writer.drain()
