"""A server's backup policy: whether it is backed up on a schedule (daily or weekly, in the server's own
minute of the backup hour), how many backups it keeps, and what that costs.

Turning backups on needs the server's region to have an active backup target. An enabled policy counts its
`retention` towards the customer's `backups` quota and is billed as the subscription add-on "backup" (key
`ADDON_KEY`) at a share of the plan's monthly list price (billing.addons.backup_price). A change is one
transaction in the lock order of panel.servers.locks: the customer (quota, credit), the server's row (it is
not being deleted meanwhile), the policy's row, then billing (invoice numbering). Saving the same policy
again changes nothing and charges nothing.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from billing import addons
from billing import errors as billing_errors
from panel.accounts import quotas
from panel.activity import log as activity
from panel.backups import pruning
from panel.backups.pricing import ADDON_KEY, ADDON_KIND, price_monthly
from panel.models import ActivityEvent, Backup, BackupPolicy, Server, User
from panel.servers.actions import Conflict, InsufficientCredit, OverQuota, Unprocessable
from panel.servers.locks import LockOrder
from panel.servers.states import Status, Task

SCHEDULES = tuple(BackupPolicy.Schedule.values)

NOT_AVAILABLE = gettext_noop("Backups are not available in this region")


class BackupsUnavailable(Unprocessable):
    """The server's region has no active backup target (HTTP 422)."""

    code = "backups_unavailable"


def available(server: Server) -> bool:
    """Whether backups can be turned on for the server: its region has an active backup target, which is
    not a storage pool on the server's own host (a backup never stays on the host it protects)."""
    target = server.region.backup_target if server.region_id else None
    if target is None or not target.is_active:
        return False
    return not (target.kind == target.Kind.HOST_POOL and target.host_id == server.host_id)


def spread(server_id) -> tuple[int, int]:
    """The server's slot, fixed from its id so that servers spread over the backup hour and the week:
    (minute 0-59, weekday 0-6 with 0 Monday)."""
    number = server_id.int if hasattr(server_id, "int") else int(str(server_id).replace("-", ""), 16)
    return number % 60, (number // 60) % 7


def default_policy(server: Server) -> BackupPolicy:
    """The policy a server without one has (unsaved): disabled, keeping BACKUP_RETENTION_DEFAULT, in its own
    minute and weekday."""
    minute, weekday = spread(server.pk)
    return BackupPolicy(
        server=server,
        enabled=False,
        retention=settings.BACKUP_RETENTION_DEFAULT,
        minute=minute,
        weekday=weekday,
    )


def policy_of(server: Server) -> BackupPolicy:
    """The server's policy, or the default one (unsaved) when it has none yet: reading it writes nothing."""
    return BackupPolicy.objects.filter(server=server).first() or default_policy(server)


def next_slot(policy: BackupPolicy, after: datetime) -> datetime:
    """The policy's first slot strictly after `after`: BACKUP_HOUR:`minute` in TIME_ZONE, every day or
    (weekly) on its `weekday`."""
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    day = after.astimezone(zone).date()
    at = time(settings.BACKUP_HOUR, policy.minute)
    for offset in range(9):
        date = day + timedelta(days=offset)
        if policy.schedule == BackupPolicy.Schedule.WEEKLY and date.weekday() != policy.weekday:
            continue
        slot = datetime.combine(date, at, tzinfo=zone)
        if slot > after:
            return slot
    raise AssertionError("a slot comes within 8 days")  # pragma: no cover


def clean(enabled, schedule, retention) -> tuple[bool, str, int]:
    """The values as they are stored; ValidationError keyed by field (`enabled`, `schedule`, `retention`)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(enabled, bool):
        errors["enabled"] = [_("Give true or false.")]
    if schedule not in SCHEDULES:
        errors["schedule"] = [_("Choose daily or weekly.")]
    if isinstance(retention, bool) or not isinstance(retention, int):
        errors["retention"] = [_("Give a whole number of backups.")]
    elif not 1 <= retention <= settings.BACKUP_RETENTION_MAX:
        errors["retention"] = [_("Keep from 1 to %(max)s backups.") % {"max": settings.BACKUP_RETENTION_MAX}]
    if errors:
        raise ValidationError(errors)
    return enabled, schedule, retention


def _live_server(locks: LockOrder, server: Server) -> Server:
    """Lock the server's row (a delete cannot start meanwhile) and check it is not being deleted."""
    locks.server()
    current = (
        Server.objects.select_for_update(no_key=True, of=("self",))
        .select_related("region__backup_target", "plan")
        .filter(pk=server.pk)
        .first()
    )
    if current is None or current.status == Status.DELETED:
        raise Conflict(_("This server has been deleted."))
    if current.status == Status.DELETING or current.task == Task.DELETE:
        raise Conflict(_("This server is being deleted."))
    return current


SUMMARIES = {
    "on": {
        BackupPolicy.Schedule.DAILY: gettext_noop(
            "Turned on daily backups of server %(name)s, keeping %(retention)s."
        ),
        BackupPolicy.Schedule.WEEKLY: gettext_noop(
            "Turned on weekly backups of server %(name)s, keeping %(retention)s."
        ),
    },
    "changed": {
        BackupPolicy.Schedule.DAILY: gettext_noop(
            "Changed the backups of server %(name)s: daily, keeping %(retention)s."
        ),
        BackupPolicy.Schedule.WEEKLY: gettext_noop(
            "Changed the backups of server %(name)s: weekly, keeping %(retention)s."
        ),
    },
}
TURNED_OFF = gettext_noop("Turned off the backups of server %(name)s.")


def _summary(was_enabled: bool, policy: BackupPolicy) -> str:
    if not policy.enabled:
        return TURNED_OFF
    return SUMMARIES["changed" if was_enabled else "on"][policy.schedule]


def update_policy(
    server: Server, user: User | None, *, enabled: bool, schedule: str, retention: int
) -> BackupPolicy:
    """Set the server's policy. ValidationError (keyed by field) for bad values; Conflict when the server is
    deleted or being deleted; Unprocessable when backups are turned on in a region without a backup
    target; OverQuota when the customer's enabled policies would keep more backups than their `backups`
    quota; InsufficientCredit (BILLING_ORDER_POLICY "prepaid") when turning on would charge more than the
    balance. Turning on starts the billing add-on, turning off ends it; the first run is the next slot.
    Nothing changes when any check fails, or when the policy is already as asked."""
    enabled, schedule, retention = clean(enabled, schedule, retention)
    now = timezone.now()
    with transaction.atomic():
        locks = LockOrder()
        customer = locks.customer(server.owner_id)
        current = _live_server(locks, server)
        if not BackupPolicy.objects.filter(pk=current.pk).exists():
            default_policy(current).save(force_insert=True)  # under the customer's lock: one insert
        policy = BackupPolicy.objects.select_for_update().get(pk=current.pk)
        was_enabled = policy.enabled
        if (policy.enabled, policy.schedule, policy.retention) == (enabled, schedule, retention):
            return policy
        if enabled and not was_enabled and not available(current):
            raise BackupsUnavailable(_(NOT_AVAILABLE))
        more = (retention if enabled else 0) - (policy.retention if was_enabled else 0)
        if more > 0:
            try:
                quotas.check(customer, {"backups": more})
            except quotas.QuotaExceeded as exc:
                raise OverQuota(exc.message) from exc
        reference = str(current.pk)
        if enabled and not was_enabled:
            price = price_monthly(current)
            if settings.BILLING_ORDER_POLICY == "prepaid":
                try:
                    addons.require_addon_credit(customer, ADDON_KIND, reference=reference, price=price)
                except billing_errors.InsufficientCredit as exc:
                    raise InsufficientCredit(exc.message) from exc
            locks.start_addon(reference, ADDON_KIND, ADDON_KEY, addon_label(current.name), price=price)
            # Backups kept from before, turned off less than the grace period ago, are kept again.
            Backup.objects.filter(server=current, delete_after__gt=now).update(delete_after=None)
        elif was_enabled and not enabled:
            locks.end_addon(reference, ADDON_KEY)
            # No longer paid for: the backups kept go after the grace period, as a deleted server's do.
            pruning.mark_going(current, now)
        if not enabled:
            policy.next_run_at = None
        elif not was_enabled or policy.schedule != schedule or policy.next_run_at is None:
            policy.schedule = schedule
            policy.next_run_at = next_slot(policy, now)
        policy.enabled, policy.schedule, policy.retention = enabled, schedule, retention
        policy.save(update_fields=["enabled", "schedule", "retention", "next_run_at", "updated_at"])
        activity.record(
            ActivityEvent.Type.SERVER_ACTION,
            summary=_summary(was_enabled, policy),
            data={"name": current.name, "retention": retention, "schedule": schedule},
            account=current.owner,
            actor=user,
            target=f"server:{current.pk}",
            staff_action=bool(user is not None and user.is_panel_staff and user.pk != current.owner_id),
        )
    return policy


def addon_label(server_name: str) -> str:
    """What the add-on is called where billing shows no message of its own (billing names it "Backups")."""
    return f"Backups ({server_name})"
