import hashlib
import hmac
import os
from decimal import Decimal

import libvirt
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from billing.models import Plan
from hypervisor import hosts, ipam
from hypervisor.connection import HypervisorError
from hypervisor.models import Host, Image, IPPool, Region
from panel.models import User

PLANS = [
    # slug, name, vcpus, memory MiB, disk GiB, transfer GiB, port Mbps, monthly IDR, monthly USD
    ("nano", "Nano", 1, 512, 10, 500, 100, Decimal("45000"), Decimal("3.00")),
    ("basic-1", "Basic 1", 1, 1024, 25, 1000, 100, Decimal("75000"), Decimal("5.00")),
    ("basic-2", "Basic 2", 2, 2048, 50, 2000, 200, Decimal("150000"), Decimal("10.00")),
    ("pro-4", "Pro 4", 4, 8192, 160, 5000, 1000, Decimal("600000"), Decimal("40.00")),
]
IMAGES = [
    ("debian-12", "Debian 12 (bookworm)", "debian"),
    ("ubuntu-24-04", "Ubuntu 24.04 LTS", "ubuntu"),
    ("almalinux-9", "AlmaLinux 9", "rhel"),
]
ACCOUNTS = [
    ("admin@demo.local", User.Role.ADMIN),
    ("staff@demo.local", User.Role.STAFF),
    ("customer@demo.local", User.Role.CUSTOMER),
]


def demo_password(email: str) -> str:
    """Stable per installation (derived from SECRET_KEY), so running seed_demo again prints the same."""
    return hmac.new(settings.SECRET_KEY.encode(), email.encode(), hashlib.sha256).hexdigest()[:16]


def local_libvirtd_answers() -> bool:
    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


class Command(BaseCommand):
    help = "Create idempotent demo data: a region, plans, images, a host and three accounts."

    def add_arguments(self, parser):
        parser.add_argument(
            "--host-uri",
            help="The demo host's URI (default: qemu:///system if it answers, "
            "else libvirt's simulated test:///default).",
        )

    def handle(self, *args, host_uri=None, **options):
        host_uri = host_uri or os.environ.get("PANEL_DEMO_HOST_URI")
        usd = settings.PANEL_CURRENCY == "USD"
        with transaction.atomic():
            region, _ = Region.objects.get_or_create(slug="jakarta", defaults={"name": "Jakarta"})
            for order, (slug, name, vcpus, memory, disk, transfer, port, idr, dollars) in enumerate(PLANS):
                monthly = dollars if usd else idr
                hourly = (monthly / 672).quantize(Decimal("0.0001"))
                Plan.objects.update_or_create(
                    slug=slug,
                    defaults=dict(
                        name=name,
                        vcpus=vcpus,
                        memory_mib=memory,
                        disk_gib=disk,
                        transfer_gib=transfer,
                        port_speed_mbps=port,
                        price_monthly=monthly,
                        price_hourly=hourly,
                        sort_order=order,
                    ),
                )
            for slug, name, family in IMAGES:
                Image.objects.get_or_create(slug=slug, defaults={"name": name, "os_family": family})
            lines = []
            for email, role in ACCOUNTS:
                user = User.objects.filter(email=email).first()
                password = demo_password(email)
                if user is None:
                    user = User.objects.create_user(email, password, role=role)
                elif not user.check_password(password):
                    user.set_password(password)
                    user.save()
                lines.append(f"  {role:<9} {email:<22} {password}")

        if not IPPool.objects.filter(region=region).exists():
            # The libvirt default network's range, above the addresses its DHCP server hands out first.
            ipam.create_pool(
                region, "demo", "192.168.122.0/24", "192.168.122.1",
                nameservers=["192.168.122.1"], excluded=["192.168.122.2-192.168.122.99"],
            )  # fmt: skip
        if not IPPool.objects.filter(region=region, family=IPPool.Family.IPV6).exists():
            # A unique local prefix cut into routed /64s (fe80::1 is the host side's usual gateway).
            ipam.create_pool(region, "demo-v6", "fd00:d3:0:100::/56", "fe80::1")
        host = Host.objects.filter(name="demo-host").first()
        if host is None:
            uri = host_uri or ("qemu:///system" if local_libvirtd_answers() else "test:///default")
            host = hosts.register_host("demo-host", uri, region)
            if uri.startswith("test:"):
                # The simulated node is small; overcommit it so the demo can hold a few servers.
                Host.objects.filter(pk=host.pk).update(
                    reserved_memory_mib=0, ram_allocation_ratio=Decimal("8")
                )
        try:
            host = hosts.probe_host(host.pk)
        except HypervisorError as exc:  # probe_host records errors itself; this is belt and braces
            self.stderr.write(f"Probing the demo host failed: {exc.message}")
        self.stdout.write(f"Demo region {region.slug}, {len(PLANS)} plans, {len(IMAGES)} images.")
        self.stdout.write(
            f"Demo host {host.name}: {host.uri} ({host.state}"
            + (f": {host.status_reason})" if host.status_reason else ")")
        )
        self.stdout.write("Demo accounts (role, email, password):")
        for line in lines:
            self.stdout.write(line)
        self.stdout.write(
            "Staff and admins set up two-factor authentication at their first login "
            "(or: manage.py totp_enroll EMAIL prints a secret for an authenticator app)."
        )
