"""Shared factories: small functions that make real rows (and real simulated hosts)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from billing.models import Plan
from hypervisor import services as hypervisor
from hypervisor.models import Host, Image, Region
from panel.models import ApiToken, SSHKey, User
from panel.openssh import parse_public_key

_counter = itertools.count(1)

# A real ed25519 public key (its private half is not kept anywhere).
ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAmYSsP7tsmNYQr9eRfzsXsa8jbCuwzfwY+y1TO5YLfo test@example"
ED25519_FINGERPRINT = "SHA256:/06VohvsEBhOyHeuOWWAlHDR99NCVm6HGvkMhkWXHxc"


def make_user(
    role: str = User.Role.CUSTOMER, email: str | None = None, password: str = "correct horse 42"
) -> User:
    email = email or f"{role}{next(_counter)}@example.com"
    return User.objects.create_user(email, password, role=role)


def make_token(user: User) -> str:
    _token, raw = ApiToken.issue(user, "test")
    return raw


def make_region(slug: str = "jakarta", name: str = "Jakarta") -> Region:
    return Region.objects.get_or_create(slug=slug, defaults={"name": name})[0]


def make_plan(
    slug: str = "small",
    vcpus: int = 1,
    memory_mib: int = 256,
    disk_gib: int = 1,
    price_monthly: Decimal = Decimal("50000"),
    **extra,
) -> Plan:
    defaults = dict(
        name=slug.title(),
        vcpus=vcpus,
        memory_mib=memory_mib,
        disk_gib=disk_gib,
        price_monthly=price_monthly,
        price_hourly=(price_monthly / 672).quantize(Decimal("0.0001")),
    )
    defaults.update(extra)
    return Plan.objects.get_or_create(slug=slug, defaults=defaults)[0]


def make_image(slug: str = "debian-12") -> Image:
    return Image.objects.get_or_create(slug=slug, defaults={"name": "Debian 12", "os_family": "debian"})[0]


def make_host(
    uri: str = "test:///default",
    region: Region | None = None,
    name: str | None = None,
    probe: bool = True,
    **fields,
) -> Host:
    """Register a host and probe it for real (the test driver by default)."""
    host = hypervisor.register_host(name or f"host{next(_counter)}", uri, region or make_region())
    if fields:
        Host.objects.filter(pk=host.pk).update(**fields)
    if probe:
        host = hypervisor.probe_host(host.pk)
    host.refresh_from_db()
    return host


def make_ssh_key(owner: User, name: str = "laptop", public_key: str = ED25519_KEY) -> SSHKey:
    key = parse_public_key(public_key)
    return SSHKey.objects.create(owner=owner, name=name, public_key=key.line, fingerprint=key.fingerprint)


def make_catalog() -> tuple[Region, Plan, Image]:
    return make_region(), make_plan(), make_image()


def make_server(owner: User, catalog: dict, name: str = "web1", status: str = "running", **fields):
    """A server row as the worker leaves it (no libvirt domain behind it unless the test makes one)."""
    from panel.models import Server

    values = dict(
        name=name, owner=owner, plan=catalog["plan"], image=catalog["image"], region=catalog["region"],
        host=catalog["host"], vcpus=1, memory_mib=256, disk_gib=1, status=status,
    )  # fmt: skip
    values.update(fields)
    return Server.objects.create(**values)
