"""Traffic shaping: capping a running domain's network speed (the plan's port speed, or its throttle)."""

from __future__ import annotations

import libvirt

from . import connection
from .models import Host
from .xml.domain import interface_devices


def kib_per_second(mbps: int) -> int:
    """libvirt's bandwidth unit (KiB/s) for a speed in megabits per second."""
    return max(1, round(mbps * 1_000_000 / 8 / 1024))


def set_port_speed(host: Host, uuid: str, mbps: int | None) -> None:
    """Cap the running domain's interfaces at `mbps` both ways (None removes the cap). Only the live
    domain is changed, never its saved configuration: on a host whose kernel lacks the traffic-shaping
    modules a configured rate would make every later start fail, so the panel applies the rate after
    each start instead. Such hosts refuse here: HypervisorError."""

    def work(conn: libvirt.virConnect) -> None:
        domain = conn.lookupByUUIDString(uuid)
        average = kib_per_second(mbps) if mbps else 0
        # A burst of one second at full speed; peak is left to the average.
        params = {
            "inbound.average": average,
            "inbound.burst": average,
            "outbound.average": average,
            "outbound.burst": average,
        }
        if not domain.isActive():
            return
        for device in interface_devices(domain.XMLDesc(0)):
            domain.setInterfaceParameters(device, params, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    connection.run(host, work)
