"""MAC addresses for servers' interfaces: random, locally administered, unicast.

The panel stores each server's MAC under a unique constraint and draws again when a draw collides
(`panel.servers.actions.order_server`); nothing about the MAC is derived from the server's UUID."""

import re
import secrets

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def random_mac() -> str:
    """A random MAC with the locally administered bit set and the multicast bit clear (46 random bits)."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{octet:02x}" for octet in octets)
