"""Host onboarding and upkeep: registering a host (its libvirt URI and TLS material), probing it,
its admin settings, enabling and disabling it, its recorded SSH host keys, and the health check.
These functions own their transactions."""

from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import connection, credentials, secrets
from . import probe as probing
from .connection import HypervisorError
from .models import Host, Region

log = logging.getLogger(__name__)

SUPPORTED_SCHEMES = {"qemu", "qemu+ssh", "qemu+tls", "qemu+tcp", "qemu+unix", "test"}
REMOTE_SCHEMES = {"qemu+ssh", "qemu+tls", "qemu+tcp"}
# A DNS name (labels of letters, digits, dashes and underscores, never starting or ending with a dash):
# a name that starts with "-" would reach ssh and ssh-keyscan as an option.
LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_NAME = re.compile(rf"^{LABEL}(\.{LABEL})*\.?$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$", re.IGNORECASE)
# URI parameters an admin may set. The others change how the panel's side connects (a local command, key
# files, known hosts, `no_verify` for TLS) and are the panel's to set (hypervisor.credentials).
URI_PARAMETERS = {"socket", "mode", "proxy", "netcat", "name"}


def uri_transport(uri: str) -> str:
    """The transport a libvirt URI names (its scheme), in lower case as libvirt reads it."""
    return uri.strip().split(":", 1)[0].lower()


def _valid_host_name(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return len(name) <= 253 and bool(HOST_NAME.match(name))
    return True


def validate_uri(uri: str) -> str:
    """The URI with its scheme in lower case (libvirt reads schemes case-insensitively, so every check
    that depends on the transport must see it so too), or a ValidationError.

    Remote transports need a valid host name; local ones (qemu://, qemu+unix://, test://) must name none:
    libvirt would quietly reach a host named in them over TLS without the panel's certificates."""
    uri = uri.strip()
    scheme, separator, rest = uri.partition(":")
    uri = scheme.lower() + separator + rest
    invalid = ValidationError(
        _(
            "Unsupported libvirt URI %(uri)s: use qemu:///system, qemu+ssh://user@host/system, "
            "qemu+tls://host/system or test:///…"
        ),
        params={"uri": uri},
        code="invalid_uri",
    )
    if not separator or any(char.isspace() or not char.isprintable() for char in uri):
        raise invalid
    try:
        parts = urlsplit(uri)
        hostname, _port, username = parts.hostname, parts.port, parts.username
    except ValueError:
        raise invalid from None
    if parts.scheme not in SUPPORTED_SCHEMES:
        raise invalid
    try:
        parameters = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise invalid from None
    refused = sorted({name for name, _value in parameters} - URI_PARAMETERS)
    if refused:
        raise ValidationError(
            _("These URI parameters are not allowed (the panel sets how it connects itself): %(names)s."),
            params={"names": ", ".join(refused)},
            code="invalid_uri",
        )
    if parts.scheme in REMOTE_SCHEMES:
        if not hostname:
            raise ValidationError(
                _("The URI %(uri)s names no host."), params={"uri": uri}, code="invalid_uri"
            )
        if not _valid_host_name(hostname):
            raise ValidationError(
                _("The host name %(host)s in the URI is not valid."),
                params={"host": hostname},
                code="invalid_uri",
            )
        if username is not None and not USER_NAME.match(username):
            raise ValidationError(
                _("The user name %(user)s in the URI is not valid."),
                params={"user": username},
                code="invalid_uri",
            )
    elif parts.netloc:
        raise ValidationError(
            _("The URI %(uri)s is for the local host and must name no host: use %(scheme)s:///…"),
            params={"uri": uri, "scheme": parts.scheme},
            code="invalid_uri",
        )
    return uri


@dataclass
class TLSMaterial:
    """PEM text of the CA certificate, the panel's client certificate and its private key."""

    ca_cert: str
    client_cert: str
    client_key: str

    def validate(self) -> None:
        try:
            x509.load_pem_x509_certificate(self.ca_cert.encode())
            x509.load_pem_x509_certificate(self.client_cert.encode())
        except ValueError:
            raise ValidationError(
                _("The CA or client certificate is not a PEM certificate."), code="invalid_tls"
            ) from None
        try:
            load_pem_private_key(self.client_key.encode(), password=None)
        except (ValueError, TypeError):
            raise ValidationError(
                _("The client key is not an unencrypted PEM private key."), code="invalid_tls"
            ) from None


def register_host(
    name: str,
    uri: str,
    region: Region,
    *,
    storage_pool: str = "default",
    storage_pool_path: str = "",
    network: str = "default",
    bridge: str = "",
    tls: TLSMaterial | None = None,
) -> Host:
    """Record a new host (state new) with its region's capacity defaults. The caller starts probing."""
    uri = validate_uri(uri)
    name = name.strip()
    if not name:
        raise ValidationError(_("A host needs a name."), code="invalid_name")
    if Host.objects.filter(name=name).exists():
        raise ValidationError(
            _("A host named %(name)s exists already."), params={"name": name}, code="duplicate"
        )
    if storage_pool_path and not storage_pool_path.startswith("/"):
        raise ValidationError(_("The storage pool path must be absolute."), code="invalid_path")
    host = Host(
        name=name,
        uri=uri,
        region=region,
        storage_pool=storage_pool.strip() or "default",
        storage_pool_path=storage_pool_path.strip(),
        network=network.strip() or "default",
        bridge=bridge.strip(),
        cpu_allocation_ratio=region.default_cpu_allocation_ratio,
        ram_allocation_ratio=region.default_ram_allocation_ratio,
        disk_allocation_ratio=region.default_disk_allocation_ratio,
        reserved_memory_mib=region.default_reserved_memory_mib,
    )
    if host.transport == "qemu+tls":
        if tls is None:
            raise ValidationError(
                _("A qemu+tls host needs the CA certificate, the client certificate and the client key."),
                code="invalid_tls",
            )
        tls.validate()
        host.tls_ca_cert = tls.ca_cert
        host.tls_client_cert = tls.client_cert
        host.tls_client_key = secrets.encrypt(tls.client_key)
    if host.transport == "qemu+ssh":
        credentials.panel_key_pair()  # so the admin can be shown the key to authorise at once
    host.save()
    return host


def probe_host(host_id: int) -> Host:
    """Probe the host and record what it is: state ready, or error with a reason. Never raises for libvirt.

    For qemu+ssh hosts the host's SSH keys are recorded on the first probe (trust on first use); later
    connections accept only those keys.
    """
    Host.objects.filter(pk=host_id).update(state=Host.State.PROBING)
    host = Host.objects.get(pk=host_id)
    if host.transport == "qemu+ssh" and not host.ssh_host_keys.strip():
        try:
            keys = credentials.scan_host_keys(host.uri)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            keys = ""
            log.warning("ssh-keyscan of %s failed: %s", host.name, exc)
        if not keys:
            host_name, port, _user = credentials.ssh_target(host.uri)
            Host.objects.filter(pk=host_id).update(
                state=Host.State.ERROR,
                status_reason=_("no SSH server answered at %(host)s:%(port)s")
                % {"host": host_name, "port": port},
                last_probed_at=timezone.now(),
            )
            return Host.objects.get(pk=host_id)
        Host.objects.filter(pk=host_id).update(ssh_host_keys=keys)
        host.ssh_host_keys = keys
    try:
        result = probing.probe(host)
    except HypervisorError as exc:
        Host.objects.filter(pk=host_id).update(
            state=Host.State.ERROR, status_reason=exc.message, last_probed_at=timezone.now()
        )
    else:
        now = timezone.now()
        Host.objects.filter(pk=host_id).update(
            state=Host.State.READY,
            status_reason="; ".join(result.warnings),
            domain_type=result.domain_type,
            arch=result.arch,
            cpu_model=result.cpu_model[:100],
            vcpus_total=result.vcpus_total,
            memory_mib_total=result.memory_mib_total,
            memory_mib_free=result.memory_mib_free,
            disk_gib_total=result.disk_gib_total,
            libvirt_version=result.libvirt_version,
            hypervisor_version=result.hypervisor_version[:80],
            inventory=result.inventory,
            shaping_error="",
            last_probed_at=now,
            last_seen_at=now,
            failed_checks=0,
        )
    host.refresh_from_db()
    return host


def set_enabled(host_id: int, enabled: bool, reason: str = "") -> None:
    """An admin enables or disables a host. A host an admin disabled stays disabled until an admin
    enables it: the health check never overrides that."""
    if enabled:
        Host.objects.filter(pk=host_id).update(
            enabled=True, disabled_by=Host.DisabledBy.NOBODY, disabled_reason=""
        )
    else:
        Host.objects.filter(pk=host_id).update(
            enabled=False, disabled_by=Host.DisabledBy.ADMIN, disabled_reason=reason[:255]
        )


SETTINGS = (
    "maintenance",
    "cpu_allocation_ratio",
    "ram_allocation_ratio",
    "disk_allocation_ratio",
    "reserved_vcpus",
    "reserved_memory_mib",
    "reserved_disk_gib",
    "storage_pool",
    "storage_pool_path",
    "network",
    "bridge",
    "force_emulation",
    "migration_uri",
    "migration_address",
)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
BRIDGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")  # Linux interface names have at most 15 chars
# Where a migration's data stream goes: tcp:// and a host name, an IPv4 address or a bracketed IPv6 one.
MIGRATION_ADDRESS = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$")


def validate_migration_uri(uri: str) -> str:
    """The URI other hosts' libvirtd use to reach this one (peer-to-peer migration), or a ValidationError:
    a supported remote URI that names the host ("" is fine: the host's own URI is used)."""
    uri = uri.strip()
    if not uri:
        return ""
    uri = validate_uri(uri)
    if not urlsplit(uri).hostname:
        raise ValidationError(
            _("The migration URI must name the host, e.g. qemu+tls://10.0.0.2/system."), code="invalid_uri"
        )
    return uri


def validate_migration_address(address: str) -> str:
    address = address.strip()
    match = MIGRATION_ADDRESS.match(address)
    if address and (not match or (match.group(2) and not 0 < int(match.group(2)[1:]) < 65536)):
        raise ValidationError(
            _("Give the migration address as tcp://host or tcp://host:port."), code="invalid_address"
        )
    return address


def update_settings(host_id: int, changes: dict) -> Host:
    """Change an admin-editable setting of a host (capacity policy, pool, network, maintenance).
    Changing the pool, network or emulation takes effect for new servers after the next probe."""
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise ValidationError(
            _("Unknown host settings: %(names)s."), params={"names": ", ".join(sorted(unknown))}
        )
    for field in ("storage_pool", "network"):
        if field in changes and not NAME.match(changes[field] or ""):
            raise ValidationError({field: _("Use letters, digits, dots, dashes and underscores.")})
    if changes.get("bridge") and not BRIDGE.match(changes["bridge"]):
        raise ValidationError(
            {"bridge": _("A bridge name has up to 15 letters, digits, dots, dashes or underscores.")}
        )
    if "migration_uri" in changes:
        uri = _validated_field("migration_uri", validate_migration_uri, changes)
        changes = {**changes, "migration_uri": uri}
    if "migration_address" in changes:
        changes = {
            **changes,
            "migration_address": _validated_field("migration_address", validate_migration_address, changes),
        }
    if changes.get("storage_pool_path") and not changes["storage_pool_path"].startswith("/"):
        raise ValidationError({"storage_pool_path": _("The storage pool path must be absolute.")})
    for field in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio"):
        if field in changes and Decimal(changes[field]) < Decimal("0.1"):
            raise ValidationError({field: _("A ratio is at least 0.1.")})
    if changes:
        Host.objects.filter(pk=host_id).update(**changes)
    return Host.objects.get(pk=host_id)


def _validated_field(field: str, validate, changes: dict) -> str:
    """The value of one setting as `validate` returns it; its ValidationError is the field's."""
    try:
        return validate(changes[field] or "")
    except ValidationError as exc:
        raise ValidationError({field: exc.messages}) from None


def forget_host_keys(host_id: int) -> None:
    """Drop the recorded SSH host keys (after a host was reinstalled); the next probe records new ones."""
    Host.objects.filter(pk=host_id).update(ssh_host_keys="")


def check_host(host: Host) -> str:
    """The health check: one cheap libvirt call under a short timeout. Returns the host's new state.

    A host that fails HOST_DOWN_AFTER_FAILURES checks in a row becomes down and, unless an admin disabled
    it, is disabled automatically; when it answers again it is ready and re-enabled, again unless an admin
    disabled it. Every write is conditional on the state read, so a probe or an admin in between wins.
    """
    try:
        connection.run(host, lambda conn: conn.getLibVersion(), timeout=settings.HOST_CHECK_TIMEOUT)
    except HypervisorError as exc:
        failures = host.failed_checks + 1
        current = Host.objects.filter(pk=host.pk, state=host.state)
        if host.state == Host.State.READY and failures >= settings.HOST_DOWN_AFTER_FAILURES:
            with transaction.atomic():
                if current.update(state=Host.State.DOWN, status_reason=exc.message, failed_checks=failures):
                    Host.objects.filter(pk=host.pk, enabled=True).update(
                        enabled=False,
                        disabled_by=Host.DisabledBy.HEALTH,
                        disabled_reason=_("Disabled automatically: the host stopped answering."),
                    )
            return Host.State.DOWN
        current.update(
            failed_checks=failures,
            status_reason=exc.message if host.state == Host.State.DOWN else host.status_reason,
        )
        return host.state
    now = timezone.now()
    if host.state == Host.State.DOWN:
        with transaction.atomic():
            if Host.objects.filter(pk=host.pk, state=Host.State.DOWN).update(
                state=Host.State.READY, status_reason="", failed_checks=0, last_seen_at=now
            ):
                Host.objects.filter(pk=host.pk, disabled_by=Host.DisabledBy.HEALTH).update(
                    enabled=True, disabled_by=Host.DisabledBy.NOBODY, disabled_reason=""
                )
        return Host.State.READY
    Host.objects.filter(pk=host.pk).update(failed_checks=0, last_seen_at=now)
    return host.state
