"""What a server's guest is told at boot: hostname, keys, password, its address (cloud-init seed)."""

from __future__ import annotations

import dataclasses

from hypervisor.cloudinit import (
    AssignedAddress,
    GuestConfig,
    build_seed_iso,
    hash_password,
    static_network,
)
from hypervisor.driver import DomainRequest
from hypervisor.images import ensure_base_volumes
from hypervisor.models import Host, Image
from hypervisor.xml.domain import KernelBoot
from panel.models import Operation, Server
from panel.servers import firewall
from panel.servers.states import Task


def assigned_addresses(server: Server) -> list[AssignedAddress]:
    """The server's addresses as the guest configures them: IPv4 (primary first), then IPv6."""
    return [
        AssignedAddress(
            address=row.address,
            network=row.pool.cidr,
            prefix_length=row.prefix_length,
            gateway=row.pool.gateway,
            nameservers=tuple(row.pool.nameservers),
        )
        for row in [*server.ipv4_addresses, *server.ipv6_addresses]
    ]


def instance_id(server: Server) -> str:
    """The cloud-init instance id the server's guest has now: its latest successful rebuild's (a rebuild
    writes a new one, so that cloud-init runs again: panel.servers.operations) or the server's id (a
    create's). A seed written again for the same guest (a migration, an evacuation) keeps it, so that
    cloud-init does not run again."""
    rebuild = (
        Operation.objects.filter(server=server, type=Task.REBUILD, status=Operation.Status.SUCCEEDED)
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    return rebuild_instance_id(server, rebuild) if rebuild else str(server.id)


def rebuild_instance_id(server: Server, rebuild_id) -> str:
    """The instance id a rebuild (operation `rebuild_id`) gives the server's guest."""
    return f"{server.id}-{rebuild_id.hex[:8]}"


def guest_config(server: Server, instance_id: str | None = None) -> GuestConfig:
    """`instance_id`: the seed's (the server's id when none is given: a create's; see `instance_id`)."""
    network = static_network(server.mac, assigned_addresses(server))
    return GuestConfig(
        instance_id=instance_id or str(server.id),
        hostname=server.name,
        ssh_keys=list(server.ssh_keys),
        password_hash=server.password_hash,
        network=network,
        user_data=server.user_data,
    )


def seed_iso(server: Server, instance_id: str | None = None) -> bytes:
    """The server's seed ISO; `instance_id` as in guest_config (pass `instance_id(server)` when the guest
    may have been rebuilt: the default is a create's, which asks the database nothing)."""
    return build_seed_iso(guest_config(server, instance_id))


def domain_request(server: Server, boot: KernelBoot | None = None, iso_path: str = "") -> DomainRequest:
    """`iso_path`: the attached installer ISO's base volume on the host (iso_file), booted first."""
    return DomainRequest(
        uuid=server.id,
        name=server.domain_name,
        vcpus=server.vcpus,
        memory_mib=server.memory_mib,
        disk_gib=server.disk_gib,
        mac=server.mac,
        ipv4=tuple(server.ipv4),
        kernel_boot=boot,
        iso_path=iso_path,
        # The interface is bound to the server's own filter (anti-spoofing for both families, firewall).
        network_filter=firewall.filter_spec(server),
    )


def image_files(server: Server, owner: str = "") -> tuple[str, KernelBoot | None]:
    """The base disk path on the server's host (copying the image there on first use) and, for images
    made for direct kernel boot, the kernel and initrd. Images without a file give a blank disk."""
    image = server.image
    if not image.path:
        return "", None
    paths = ensure_base_volumes(server.host, image, owner=owner)
    boot = KernelBoot(paths["kernel"], paths["initrd"], image.cmdline) if "kernel" in paths else None
    return paths["disk"], boot


def iso_file(host: Host, iso: Image | None, owner: str = "") -> str:
    """The path on the host of an installer ISO (copying it there on first use, shared read-only by every
    server of the host that attaches it); "" for none."""
    if iso is None:
        return ""
    return ensure_base_volumes(host, iso, owner=owner)["iso"]


# Rescue mode: the rescue system is booted with the server's disk attached and a seed of its own.
RESCUE_HOSTNAME = "rescue"


def rescue_files(server: Server, image: Image, owner: str = "") -> tuple[str, KernelBoot | None]:
    """The rescue system's base disk on the server's host (copied there on first use, like OS images) and,
    when it boots directly, its kernel and initrd. An image without a file gives a blank disk."""
    if not image.path:
        return "", None
    paths = ensure_base_volumes(server.host, image, owner=owner)
    boot = KernelBoot(paths["kernel"], paths["initrd"], image.cmdline) if "kernel" in paths else None
    return paths["disk"], boot


def rescue_seed_iso(server: Server, password: str, instance_id: str) -> bytes:
    """Rescue mode's seed: the server's address and SSH keys, the hostname `rescue`, and the one-time root
    password (only its hash is written), with which root may log in on the console and over SSH. A new
    instance id each time, so that cloud-init applies it on every rescue."""
    config = dataclasses.replace(
        guest_config(server, instance_id),
        hostname=RESCUE_HOSTNAME,
        password_hash=hash_password(password),
        user_data="",
        root_password_login=True,
    )
    return build_seed_iso(config)
