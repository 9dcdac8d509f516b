"""What a server's guest is told at boot: hostname, keys, password, its address (cloud-init seed)."""

from __future__ import annotations

from hypervisor.cloudinit import GuestConfig, build_seed_iso, static_network
from hypervisor.driver import DomainRequest
from hypervisor.images import ensure_base_volumes
from hypervisor.xml.domain import KernelBoot
from panel.models import Server


def guest_config(server: Server, instance_id: str | None = None) -> GuestConfig:
    network = None
    addresses = server.ipv4_addresses
    if addresses:
        address = addresses[0]
        pool = address.pool
        network = static_network(server.mac, address.address, pool.cidr, pool.gateway, pool.nameservers)
    return GuestConfig(
        instance_id=instance_id or str(server.id),
        hostname=server.name,
        ssh_keys=list(server.ssh_keys),
        password_hash=server.password_hash,
        network=network,
        user_data=server.user_data,
    )


def seed_iso(server: Server, instance_id: str | None = None) -> bytes:
    return build_seed_iso(guest_config(server, instance_id))


def domain_request(server: Server, boot: KernelBoot | None = None) -> DomainRequest:
    return DomainRequest(
        uuid=server.id,
        name=server.domain_name,
        vcpus=server.vcpus,
        memory_mib=server.memory_mib,
        disk_gib=server.disk_gib,
        mac=server.mac,
        ipv4=tuple(server.ipv4),
        kernel_boot=boot,
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
