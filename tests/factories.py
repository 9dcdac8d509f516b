"""Shared factories: small functions that make real rows (and real simulated hosts)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from decimal import Decimal

from billing.models import Plan
from hypervisor import hosts
from hypervisor.models import Host, Image, Region
from panel.accounts.openssh import parse_public_key
from panel.models import ApiToken, SSHKey, User

_counter = itertools.count(1)

# A real ed25519 public key (its private half is not kept anywhere).
ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAmYSsP7tsmNYQr9eRfzsXsa8jbCuwzfwY+y1TO5YLfo test@example"
ED25519_FINGERPRINT = "SHA256:/06VohvsEBhOyHeuOWWAlHDR99NCVm6HGvkMhkWXHxc"


def make_user(
    role: str = User.Role.CUSTOMER,
    email: str | None = None,
    password: str = "correct horse 42",
    totp: bool | None = None,
    language: str = "en",
) -> User:
    """A user (who chose English unless `language` says otherwise; "" for an account from before accounts
    had a language); staff and admins come with a confirmed TOTP device (they must have one), customers
    without one unless `totp=True`."""
    email = email or f"{role}{next(_counter)}@example.com"
    user = User.objects.create_user(email, password, role=role, language=language)
    if totp or (totp is None and user.is_panel_staff):
        enrol_totp(user)
    return user


def enrol_totp(user: User):
    """Give the user a confirmed TOTP device (as if enrolled, without an activity event)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from panel.accounts import totp

    return TOTPDevice.objects.create(user=user, name=totp.TOTP_DEVICE_NAME, confirmed=True)


def totp_code(user: User, steps_ahead: int = 0) -> str:
    """The code the user's authenticator app shows now (`steps_ahead=1`: the next 30-second step's code,
    which the device also accepts, for a second login within the same step)."""
    import time

    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user=user, confirmed=True)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


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
    host = hosts.register_host(name or f"host{next(_counter)}", uri, region or make_region())
    if fields:
        Host.objects.filter(pk=host.pk).update(**fields)
    if probe:
        host = hosts.probe_host(host.pk)
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


# Hosts of a given size, IPv4 pools.

# libvirt's test driver reads a whole simulated node from a file; each file is its own simulated host.
NODE_XML = """<node>
  <cpu>
    <mhz>2400</mhz>
    <model>x86_64</model>
    <nodes>1</nodes>
    <sockets>1</sockets>
    <cores>{cores}</cores>
    <threads>1</threads>
  </cpu>
  <memory>{memory_kib}</memory>
  <network>
    <name>default</name>
    <bridge name="virbr42"/>
    <forward/>
    <ip address="192.168.142.1" netmask="255.255.255.0"/>
  </network>
  <pool type="dir">
    <name>default</name>
    <target><path>/var/lib/libvirt/images</path></target>
  </pool>
</node>
"""


def node_uri(directory, cores: int = 4, memory_mib: int = 8192, name: str = "node.xml") -> str:
    """A test:///… URI of a simulated host of that size, private to the test (its own node file)."""
    from pathlib import Path

    path = Path(directory) / name
    path.write_text(NODE_XML.format(cores=cores, memory_kib=memory_mib * 1024))
    return f"test://{path}"


def set_host_size(
    host: Host, vcpus: int = 64, memory_mib: int = 65536, disk_gib: int = 1000, **fields
) -> Host:
    """Give a host an exact capacity: no reserved resources, allocation ratios of 1, state ready."""
    values = dict(
        state=Host.State.READY,
        vcpus_total=vcpus,
        memory_mib_total=memory_mib,
        disk_gib_total=disk_gib,
        reserved_vcpus=0,
        reserved_memory_mib=0,
        reserved_disk_gib=0,
        cpu_allocation_ratio=Decimal("1"),
        ram_allocation_ratio=Decimal("1"),
        disk_allocation_ratio=Decimal("1"),
    )
    values.update(fields)
    Host.objects.filter(pk=host.pk).update(**values)
    host.refresh_from_db()
    return host


def make_pool(
    region: Region,
    cidr: str = "192.0.2.0/24",
    gateway: str | None = None,
    name: str = "",
    nameservers: list[str] | None = None,
    excluded: list[str] | None = None,
):
    """An IPv4 pool through the real service (gateway: the network's first address unless given)."""
    import ipaddress

    from hypervisor import ipam

    if gateway is None:
        gateway = str(next(ipaddress.IPv4Network(cidr).hosts()))
    return ipam.create_pool(
        region, name or cidr, cidr, gateway, nameservers=nameservers or ["192.0.2.53"], excluded=excluded
    )


# Servers made for real on a host, and leaving a simulated host as it was found.


def run_operation(operation):
    """Carry the operation out as a worker does (in this process) and return it refreshed."""
    from panel.servers import operations

    operations.execute(str(operation.pk))
    operation.refresh_from_db()
    return operation


def make_real_server(owner: User, *, plan: Plan, image: Image, region: Region, name: str = "web1", **order):
    """Order a server through the real service and run its create operation on the region's host."""
    from panel.models import Operation
    from panel.servers import actions

    server = actions.order_server(owner, name=name, plan=plan, image=image, region=region, **order)
    create = run_operation(Operation.objects.get(server=server, type=Operation.Type.CREATE))
    server.refresh_from_db()
    assert create.status == Operation.Status.SUCCEEDED, (create.error, create.detail)
    assert (server.status, server.task) == ("running", None), server.status_reason
    return server


class TidySimulatedHost:
    """`with TidySimulatedHost(uri) as conn:` removes the domains and volumes made on a test:/// host inside
    the block (its state lives as long as the process, not the test)."""

    def __init__(self, uri: str, pool: str = "default"):
        self.uri, self.pool = uri, pool

    def __enter__(self):
        from hypervisor import connection

        self.conn = connection.connection(self.uri)
        self.domains_before = {domain.UUIDString() for domain in self.conn.listAllDomains()}
        self.volumes_before = set(self.conn.storagePoolLookupByName(self.pool).listVolumes())
        return self.conn

    def __exit__(self, *exc_info) -> bool:
        for domain in self.conn.listAllDomains():
            if domain.UUIDString() in self.domains_before:
                continue
            if domain.isActive():
                domain.destroy()
            for name in domain.snapshotListNames(0):
                domain.snapshotLookupByName(name, 0).delete(0)
            if domain.isPersistent():
                domain.undefine()
        storage = self.conn.storagePoolLookupByName(self.pool)
        for name in set(storage.listVolumes()) - self.volumes_before:
            storage.storageVolLookupByName(name).delete(0)
        return False


# Billing: a moved clock, local moments, and the ledger's invariant.


def local_time(*args):
    """A moment in the installation's time zone, e.g. local_time(2026, 1, 31, 10)."""
    from datetime import datetime

    from django.utils import timezone

    return datetime(*args, tzinfo=timezone.get_current_timezone())


def moved_clock(moment):
    """`with moved_clock(moment):` timezone.now() answers `moment` inside the block (for services that
    take no `at`, e.g. an order or a resize)."""
    from unittest import mock

    return mock.patch("django.utils.timezone.now", return_value=moment)


def check_books(account) -> tuple[Decimal, Decimal]:
    """Assert the ledger invariants of one account and return (balance, unallocated credit).

    The balance is the ledger's sum, and equals payments + credits + adjustments (+ refunds) - charges;
    every issued invoice is charged exactly once; and, counted from the invoices' side, the balance is
    -(open invoice totals) + the money received or credited that no paid invoice used. Credit is never
    left idle while it could pay the oldest open invoice."""
    from billing import ledger
    from billing.models import Invoice, LedgerEntry, Payment
    from billing.money import quantize

    entries = list(LedgerEntry.objects.filter(account=account))
    by_kind: dict[str, Decimal] = {}
    for entry in entries:
        by_kind[entry.kind] = by_kind.get(entry.kind, Decimal(0)) + entry.amount
    balance = ledger.balance(account)
    assert balance == quantize(sum((e.amount for e in entries), Decimal(0)))

    invoices = list(Invoice.objects.filter(account=account).exclude(status=Invoice.Status.DRAFT))
    for invoice in invoices:
        assert invoice.total == quantize(sum((line.amount for line in invoice.lines.all()), Decimal(0)))
    charged = sorted(e.invoice_id for e in entries if e.kind == LedgerEntry.Kind.CHARGE)
    assert charged == sorted(i.pk for i in invoices), "each issued invoice is charged once"
    charges = -by_kind.get(LedgerEntry.Kind.CHARGE, Decimal(0))
    assert charges == sum((i.total for i in invoices), Decimal(0))

    payments = sum((p.amount for p in Payment.objects.filter(account=account)), Decimal(0))
    assert by_kind.get(LedgerEntry.Kind.PAYMENT, Decimal(0)) == payments
    credits = by_kind.get(LedgerEntry.Kind.CREDIT, Decimal(0))
    adjustments = by_kind.get(LedgerEntry.Kind.ADJUSTMENT, Decimal(0))
    refunds = by_kind.get(LedgerEntry.Kind.REFUND, Decimal(0))
    assert balance == quantize(payments + credits + adjustments + refunds - charges)

    def total(status) -> Decimal:
        return sum((i.total for i in invoices if i.status == status), Decimal(0))

    # What came in (payments, credits, adjustments) less what paid or voided invoices used.
    unallocated = quantize(
        payments + credits + adjustments + refunds - total(Invoice.Status.PAID) - total(Invoice.Status.VOID)
    )
    assert balance == quantize(-total(Invoice.Status.OPEN) + unallocated)
    oldest_open = sorted(
        (i for i in invoices if i.status == Invoice.Status.OPEN), key=lambda i: (i.issued_at, i.pk)
    )
    if oldest_open and unallocated >= 0:
        assert unallocated < oldest_open[0].total, "credit left idle while it could pay the oldest invoice"
    return balance, unallocated


# Query counts.


@dataclasses.dataclass
class Questions:
    asked: list[str] = dataclasses.field(default_factory=list)  # what the block sent but the PREPAREs
    prepared: list[str] = dataclasses.field(default_factory=list)  # the PREPAREs


@contextlib.contextmanager
def questions() -> Iterator[Questions]:
    """`with questions() as sent:` the statements the block sent, in `sent.asked` after it, less the PREPAREs
    of hand-written statements used for the first time on this database session (prepared_statements
    prepares each once per session, so they fall on whichever test used the statement first there), which
    are in `sent.prepared`."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    found = Questions()
    with CaptureQueriesContext(connection) as captured:
        yield found
    for query in captured.captured_queries:
        (found.prepared if query["sql"].startswith("PREPARE ") else found.asked).append(query["sql"])
