"""Backup targets, the panel's side: adding and changing a target (hypervisor.models.BackupTarget) and
choosing a region's target, each with its line on the admins' audit log, in one transaction. The backup
targets pages and `manage.py add_backup_target` are thin callers.

What holds: a `host_pool` target names a registered host and a valid libvirt pool name (and an absolute
pool path, when given); an `ssh` target has a `user@host` address, a port from 1 to 65535 and an absolute
directory, and the SSH server's host keys as they were read when the address was given (the worker's
connections trust only those). Bad input raises a ValidationError whose codes `ERROR_FIELDS` maps to the
field it is about; then nothing is stored."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hypervisor import backup_targets as targets_driver
from hypervisor.hosts import HOST_NAME, USER_NAME
from hypervisor.models import Allocation, BackupTarget, Host, Region
from panel import dispatch
from panel.activity import log as activity
from panel.models import ActivityEvent, User

# Which field a ValidationError code belongs to (the service's argument names, which the forms share).
ERROR_FIELDS = {
    "invalid_name": "name",
    "duplicate": "name",
    "invalid_kind": "kind",
    "no_host": "host",
    "invalid_pool": "pool",
    "invalid_path": "pool_path",
    "invalid_address": "ssh_address",
    "no_host_keys": "ssh_address",
    "invalid_port": "ssh_port",
    "invalid_directory": "directory",
    "in_use": "is_active",
    "holds_backups": "directory",
    "own_host": "host",
}
# Where a target keeps its files: it cannot move while it holds backups (their files would be left behind,
# unreadable and never removed). A new SSH address or port is the same storage reached another way.
LOCATION = ("host", "pool", "pool_path", "directory")
# What of a target may change (its kind stays), as recorded on the audit log.
CHANGEABLE = ("name", "host", "pool", "pool_path", "ssh_address", "ssh_port", "directory", "is_active")
# The audit log's type for backup target changes (infrastructure changes, as hosts are).
AUDIT_TYPE = ActivityEvent.Type.BACKUP_TARGET_CHANGED

POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_MAX = BackupTarget._meta.get_field("name").max_length


def split_ssh_address(address: str) -> tuple[str, str]:
    """(user, host) of `user@host`; the host may be a DNS name, an IPv4 or an IPv6 address (with or
    without brackets). Raises ValidationError (code invalid_address) for anything else, also for a host or
    user that starts with a dash (it would reach ssh as an option)."""
    user, at, host = (address or "").strip().rpartition("@")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not at or not USER_NAME.match(user) or not _valid_host(host):
        raise ValidationError(
            _("Give the SSH address as user@host, e.g. backup@192.0.2.20 or backup@backup1.example.com."),
            code="invalid_address",
        )
    return user, host


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return 0 < len(host) <= 253 and bool(HOST_NAME.match(host.lower()))
    return True


def _clean(values: dict) -> dict:
    """The values of a target checked and normalised; raises ValidationError with every problem found."""
    errors: list[ValidationError] = []
    name = (values.get("name") or "").strip()
    if not name or len(name) > NAME_MAX:
        text = _("A backup target needs a name of at most %(max)s characters.") % {"max": NAME_MAX}
        errors.append(ValidationError(text, code="invalid_name"))
    else:
        duplicate = BackupTarget.objects.filter(name=name)
        if values.get("pk"):
            duplicate = duplicate.exclude(pk=values["pk"])
        if duplicate.exists():
            errors.append(
                ValidationError(
                    _("A backup target named %(name)s exists already.") % {"name": name}, code="duplicate"
                )
            )
    cleaned = {"name": name, "kind": values.get("kind"), "is_active": bool(values.get("is_active", True))}
    if cleaned["kind"] == BackupTarget.Kind.HOST_POOL:
        host = values.get("host")
        if not isinstance(host, Host) or not Host.objects.filter(pk=host.pk).exists():
            errors.append(
                ValidationError(_("Choose a registered host for the storage pool."), code="no_host")
            )
        pool = (values.get("pool") or "").strip() or BackupTarget._meta.get_field("pool").default
        if len(pool) > 100 or not POOL_NAME.match(pool):
            errors.append(
                ValidationError(
                    _("A storage pool name has letters, digits, dots, dashes and underscores."),
                    code="invalid_pool",
                )
            )
        pool_path = (values.get("pool_path") or "").strip()
        if pool_path and not pool_path.startswith("/"):
            errors.append(ValidationError(_("The storage pool path must be absolute."), code="invalid_path"))
        cleaned.update(host=host, pool=pool, pool_path=pool_path, ssh_address="", ssh_port=22, directory="")
    elif cleaned["kind"] == BackupTarget.Kind.SSH:
        address = (values.get("ssh_address") or "").strip()
        try:
            split_ssh_address(address)
        except ValidationError as exc:
            errors.append(exc)
        port = values.get("ssh_port") or 22
        if not isinstance(port, int) or not 1 <= port <= 65535:
            errors.append(ValidationError(_("An SSH port is from 1 to 65535."), code="invalid_port"))
        directory = (values.get("directory") or "").strip()
        if not directory.startswith("/") or len(directory) > 500 or "\n" in directory:
            errors.append(
                ValidationError(
                    _("Give the directory on the backup server as an absolute path, e.g. /srv/backups."),
                    code="invalid_directory",
                )
            )
        cleaned.update(host=None, pool="", pool_path="", ssh_address=address, ssh_port=port,
                       directory=directory.rstrip("/") or "/")  # fmt: skip
    else:
        errors.append(ValidationError(_("Choose a storage pool on a host or a directory over SSH."),
                                      code="invalid_kind"))  # fmt: skip
    if errors:
        raise ValidationError(errors)
    return cleaned


def _host_keys(address: str, port: int) -> str:
    """The SSH server's host keys (known_hosts lines), read now; a ValidationError when none answer."""
    _user, host = split_ssh_address(address)
    keys = targets_driver.scan_host_keys(host, port)
    if not keys.strip():
        raise ValidationError(
            _("No SSH host keys could be read from %(host)s port %(port)s: check the address and the port.")
            % {"host": host, "port": port},
            code="no_host_keys",
        )
    return keys


def _record(actor: User | None, target: BackupTarget, summary: str, data: dict) -> None:
    activity.record(
        AUDIT_TYPE,
        summary=summary,
        data=data,
        actor=actor,
        target=f"backup_target:{target.pk}",
        staff_action=True,
    )


def where(target: BackupTarget) -> str:
    """Where the target keeps backups, e.g. `kvm2: vpspanel-backups` or `backup@192.0.2.20:/srv/backups`."""
    if target.kind == BackupTarget.Kind.HOST_POOL:
        return f"{target.host.name if target.host_id else '?'}: {target.pool}"
    port = f" (port {target.ssh_port})" if target.ssh_port != 22 else ""
    return f"{target.ssh_address}:{target.directory}{port}"


def create_target(
    actor: User | None,
    *,
    name: str,
    kind: str,
    host: Host | None = None,
    pool: str = "",
    pool_path: str = "",
    ssh_address: str = "",
    ssh_port: int = 22,
    directory: str = "",
) -> BackupTarget:
    """Add a backup target and record who did it (`actor` None: an operator at the command line). An SSH
    target's host keys are read first (outside any transaction). Raises ValidationError (ERROR_FIELDS);
    then nothing is stored."""
    cleaned = _clean(
        {"name": name, "kind": kind, "host": host, "pool": pool, "pool_path": pool_path,
         "ssh_address": ssh_address, "ssh_port": ssh_port, "directory": directory}
    )  # fmt: skip
    keys = _host_keys(cleaned["ssh_address"], cleaned["ssh_port"]) if kind == BackupTarget.Kind.SSH else ""
    with transaction.atomic():
        _clean(cleaned)  # the name is still free
        target = BackupTarget.objects.create(**cleaned, ssh_host_keys=keys)
        _record(
            actor,
            target,
            gettext_noop("Backup target %(name)s added (%(where)s)."),
            {"name": target.name, "where": where(target)},
        )
        check_later(target)  # its page shows whether the panel can write there
    return target


def update_target(target: BackupTarget, actor: User | None, **changes: Any) -> BackupTarget:
    """Change what may change of a target (CHANGEABLE; one left out stays as it is; the kind stays) and
    record what really changed under its name before the change; nothing is recorded when nothing changed.
    A new SSH address or port reads the host keys again. Answers the target as stored now. Raises
    ValidationError (ERROR_FIELDS); then nothing changes."""
    unknown = set(changes) - set(CHANGEABLE)
    if unknown:
        raise TypeError(f"not changeable: {', '.join(sorted(unknown))}")
    current = {name: getattr(target, name) for name in CHANGEABLE}
    cleaned = _clean({**current, **changes, "kind": target.kind, "pk": target.pk})
    moved = target.kind == BackupTarget.Kind.SSH and (
        cleaned["ssh_address"] != target.ssh_address or cleaned["ssh_port"] != target.ssh_port
    )
    keys = _host_keys(cleaned["ssh_address"], cleaned["ssh_port"]) if moved else None
    with transaction.atomic():
        before = BackupTarget.objects.select_for_update().get(pk=target.pk)
        _clean({**cleaned, "pk": before.pk})
        if not cleaned["is_active"] and before.is_active:
            _check_unused(before)
        changed = {name: cleaned[name] for name in CHANGEABLE if cleaned[name] != getattr(before, name)}
        if set(changed) & set(LOCATION) and before.backups.exists():
            raise ValidationError(
                _(
                    "%(name)s holds backups: where it keeps them cannot change. Add a new target for the new "
                    "place and choose it for the regions; the backups kept here stay restorable."
                )
                % {"name": before.name},
                code="holds_backups",
            )
        for name, value in changed.items():
            setattr(before, name, value)
        if keys is not None:
            before.ssh_host_keys = keys
        if changed:
            before.save()
            _record(
                actor,
                before,
                gettext_noop("Backup target %(name)s changed: %(changes)s."),
                {"name": target.name, "changes": _describe(changed)},
            )
    return before


def _check_unused(target: BackupTarget) -> None:
    """A target regions back up to stays in use (their backups would have nowhere to go)."""
    regions = list(
        Region.objects.filter(backup_target=target).order_by("name").values_list("name", flat=True)
    )
    if regions:
        raise ValidationError(
            _("%(name)s is the backup target of %(regions)s: choose another target for them first.")
            % {"name": target.name, "regions": ", ".join(regions)},
            code="in_use",
        )


def _describe(changes: dict) -> str:
    parts = []
    for name, value in sorted(changes.items()):
        parts.append(f"{name}={value.name if isinstance(value, Host) else value}")
    return ", ".join(parts)[:500]


def check_later(target: BackupTarget) -> None:
    """Have a worker check the target (hypervisor.backup_targets.record_check) once the caller's transaction
    commits; its page shows the outcome."""
    dispatch.after_commit(dispatch.CHECK_BACKUP_TARGET, target.pk)


def set_region_target(actor: User | None, region: Region, target: BackupTarget | None) -> Region:
    """Make `target` the region's backup target (None: backups become unavailable in the region for new
    backups; the backups kept stay where they are) and record it when it changed. A target that is not in
    use cannot be chosen (ValidationError, code inactive)."""
    if target is not None and not target.is_active:
        raise ValidationError(
            _("The backup target %(name)s is not in use; turn it on first.") % {"name": target.name},
            code="inactive",
        )
    if target is not None and target.host_id and Allocation.objects.filter(host=target.host_id).exists():
        # Its own servers could never be backed up: a backup never stays on the host it protects.
        raise ValidationError(
            _(
                "%(name)s keeps backups on %(host)s, which runs servers: their backups would stay on their "
                "own host. Choose a target on a host without servers, or a directory over SSH."
            )
            % {"name": target.name, "host": target.host.name},
            code="own_host",
        )
    with transaction.atomic():
        locked = Region.objects.select_for_update().get(pk=region.pk)
        if locked.backup_target_id == (target.pk if target else None):
            return locked
        locked.backup_target = target
        locked.save(update_fields=["backup_target"])
        if target is None:
            activity.record(
                AUDIT_TYPE,
                summary=gettext_noop("Region %(region)s has no backup target now."),
                data={"region": locked.name},
                actor=actor,
                target=f"region:{locked.pk}",
                staff_action=True,
            )
        else:
            activity.record(
                AUDIT_TYPE,
                summary=gettext_noop("Region %(region)s backs up to %(name)s now."),
                data={"region": locked.name, "name": target.name},
                actor=actor,
                target=f"region:{locked.pk}",
                staff_action=True,
            )
    return locked
