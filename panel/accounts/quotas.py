"""Per-customer quotas, checked in the same transaction as the order or resize that would exceed them
(the caller holds the customer's row lock, so concurrent orders are counted one after the other)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

import prepared_statements
from billing import ledger, prices
from billing.money import currency, quantize
from hypervisor.models import IPAddress
from panel.accounts.models import Quota
from panel.activity import log as activity
from panel.models import ActivityEvent, BackupPolicy, Operation, Server, Snapshot, User
from panel.servers import operation_states

# The column's maximum (PositiveIntegerField): a larger limit is refused as invalid input.
MAX_LIMIT = 2_147_483_647

LABELS = {
    "servers": gettext_lazy("servers"),
    "vcpus": gettext_lazy("vCPUs"),
    "memory_mib": gettext_lazy("MiB of memory"),
    "disk_gib": gettext_lazy("GiB of disk"),
    "snapshots": gettext_lazy("snapshots"),
    "extra_ipv4": gettext_lazy("additional IPv4 addresses"),
    "backups": gettext_lazy("backups kept"),
}


def default_limits() -> dict[str, int | None]:
    return {name: settings.DEFAULT_QUOTA.get(name) for name in Quota.RESOURCES}


def quota_for(user: User) -> Quota:
    """The customer's quota row, made from the defaults on first use."""
    quota = Quota.objects.filter(user=user).first()
    if quota is None:
        quota, _created = Quota.objects.get_or_create(user=user, defaults=default_limits())
    return quota


def _server_usage(owner_id: int) -> dict[str, int]:
    """The customer's servers not deleted and their vCPUs, memory and disk, in one statement written by hand
    (every order asks it; compiling the ORM's aggregate cost several times the CPU Postgres spends on it)."""
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(Server._meta.get_field(name).column)

    sums = ", ".join(f"COALESCE(SUM({column(name)}), 0)" for name in ("vcpus", "memory_mib", "disk_gib"))
    with connection.cursor() as cursor:
        prepared_statements.execute(  # prepared once per database session
            cursor,
            f"SELECT COUNT(*), {sums} FROM {quote(Server._meta.db_table)} "  # noqa: S608 (names from the model)
            f"WHERE {column('owner')} = %s AND {column('status')} <> %s",
            [owner_id, str(Server.Status.DELETED)],
        )
        servers, vcpus, memory_mib, disk_gib = cursor.fetchone()
    return {"servers": servers, "vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib}


def usage(user: User, resources: tuple[str, ...] = Quota.RESOURCES) -> dict[str, int]:
    """What the customer holds now (servers not deleted, their resources, their snapshots, their additional
    addresses, the backups their enabled backup policies keep): the resources asked for, in one query for
    the servers and one statement for the others."""
    totals: dict[str, int] = {}
    server_fields = [name for name in resources if name not in OTHER_RESOURCES]
    if server_fields:
        servers = _server_usage(user.pk)
        totals.update({name: servers[name] for name in server_fields})
    others = [name for name in OTHER_RESOURCES if name in resources]
    if others:
        totals.update(_other_usage(user, others))
    return totals


# What usage() reads besides the servers' own columns, each a subquery of one statement written by hand:
# compiling the ORM's four queries (or subqueries) for them cost about 30 times the CPU of this statement.
OTHER_RESOURCES = ("snapshots", "extra_ipv4", "backups")


def _name(model, field: str | None = None) -> str:
    return connection.ops.quote_name(model._meta.get_field(field).column if field else model._meta.db_table)


def _other_usage_parts(owner_id: int) -> dict[str, tuple[str, list]]:
    """{resource: (its subquery, the subquery's parameters)} for the customer."""
    server, snapshot, operation = _name(Server), _name(Snapshot), _name(Operation)
    address, policy = _name(IPAddress), _name(BackupPolicy)
    owner, status, sid = _name(Server, "owner"), _name(Server, "status"), _name(Server, "id")
    live, live_params = f"v.{owner} = %s AND v.{status} <> %s", [owner_id, str(Server.Status.DELETED)]
    open_statuses = ", ".join(["%s"] * len(operation_states.OPEN))
    return {
        # Snapshots still being taken count too: N concurrent requests must not pass one by one.
        "snapshots": (
            f"(SELECT COUNT(*) FROM {snapshot} s JOIN {server} v ON v.{sid} = s.{_name(Snapshot, 'server')} "
            f"WHERE {live}) + (SELECT COUNT(*) FROM {operation} o JOIN {server} v "
            f"ON v.{sid} = o.{_name(Operation, 'server')} WHERE v.{owner} = %s "
            f"AND o.{_name(Operation, 'type')} = %s AND o.{_name(Operation, 'status')} IN ({open_statuses}))",
            [*live_params, owner_id, str(Operation.Type.SNAPSHOT), *map(str, operation_states.OPEN)],
        ),
        "extra_ipv4": (
            f"(SELECT COUNT(*) FROM {address} a WHERE a.{_name(IPAddress, 'role')} = %s "
            f"AND a.{_name(IPAddress, 'consumer_uuid')} IN (SELECT v.{sid} FROM {server} v WHERE {live}))",
            [str(IPAddress.Role.ADDITIONAL), *live_params],
        ),
        # The backups a policy keeps count from when it is enabled (before any is taken).
        "backups": (
            f"(SELECT COALESCE(SUM(b.{_name(BackupPolicy, 'retention')}), 0) FROM {policy} b JOIN {server} v "
            f"ON v.{sid} = b.{_name(BackupPolicy, 'server')} WHERE b.{_name(BackupPolicy, 'enabled')} = %s "
            f"AND {live})",
            [True, *live_params],
        ),
    }


def _other_usage(user: User, names: list[str]) -> dict[str, int]:
    """The customer's snapshots, additional addresses and kept backups asked for, in one statement."""
    parts = _other_usage_parts(user.pk)
    params = [value for name in names for value in parts[name][1]]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts[name][0] for name in names)}", params)
        row = cursor.fetchone()
    return {name: int(value or 0) for name, value in zip(names, row, strict=True)}


def snapshots_of_server(server: Server) -> int:
    """The server's snapshots, with the ones still being taken."""
    being_taken = Operation.objects.filter(
        server=server,
        type=Operation.Type.SNAPSHOT,
        status__in=operation_states.OPEN,
    )
    return Snapshot.objects.filter(server=server).count() + being_taken.count()


def report(user: User) -> dict[str, dict[str, int | None]]:
    """{resource: {limit, used}} as the API and the pages show it."""
    limits = limits_of(user)
    used = usage(user)
    return {name: {"limit": limits[name], "used": used[name]} for name in Quota.RESOURCES}


class QuotaExceeded(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class OwnAccount(Exception):
    """Staff may not change the quota or the new-account limits of their own account (HTTP 403)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _refuse_own(user: User, by: User | None) -> None:
    if by is not None and by.pk == user.pk:
        raise OwnAccount(
            _(
                "You cannot change the quota or the new-account limits of your own account; ask another "
                "staff member."
            )
        )


def own_limits(user: User) -> dict[str, int | None]:
    """The customer's own limits: their quota row, or the defaults while they have none (read, not
    created). New-account limits are not applied here (see limits_of)."""
    try:
        quota = user.quota
    except Quota.DoesNotExist:
        return default_limits()
    return quota.limits()


def _smaller(own: int | None, new_account: int | None) -> int | None:
    if own is None:
        return new_account
    if new_account is None:
        return own
    return min(own, new_account)


def limits_of(user: User) -> dict[str, int | None]:
    """The limits in force: the customer's own, held to NEW_ACCOUNT_QUOTA while the account has its
    new-account limits (a sign-up that has not paid yet)."""
    own = own_limits(user)
    if not user.new_account_limits:
        return own
    return {name: _smaller(own[name], settings.NEW_ACCOUNT_QUOTA.get(name)) for name in Quota.RESOURCES}


def _is_new_account_limit(user: User, name: str) -> bool:
    """Whether the new-account limit (not the customer's own quota) is what binds `name`."""
    if not user.new_account_limits:
        return False
    new_account, own = settings.NEW_ACCOUNT_QUOTA.get(name), own_limits(user)[name]
    return new_account is not None and (own is None or new_account < own)


def exceeded(limits: dict[str, int | None], used: dict[str, int], more: dict[str, int]) -> str | None:
    """The first resource that `more`, added to `used`, takes over its limit; None when everything fits.
    Only the resources that grow and have a limit count (`used` needs only those)."""
    return next(
        (
            name
            for name, extra in more.items()
            if extra > 0 and limits.get(name) is not None and used[name] + extra > limits[name]
        ),
        None,
    )


def check(user: User, more: dict[str, int]) -> None:
    """Raise QuotaExceeded naming the first quota that `more` (added to the current usage) would exceed.
    Only the resources that grow and have a limit are counted."""
    limits = limits_of(user)
    counted = tuple(name for name, extra in more.items() if extra > 0 and limits.get(name) is not None)
    if not counted:
        return
    used = usage(user, counted)
    name = exceeded(limits, used, more)
    if name is None:
        return
    values = {"limit": limits[name], "what": LABELS[name], "used": used[name], "extra": more[name]}
    if _is_new_account_limit(user, name):
        raise QuotaExceeded(
            _(
                "New accounts may use %(limit)s %(what)s until their payments reach %(amount)s "
                "%(currency)s; you use %(used)s and this needs %(extra)s more. The limit is lifted "
                "automatically when they do."
            )
            % {**values, "amount": lift_amount(), "currency": currency()}
        )
    raise QuotaExceeded(
        _("Your quota allows %(limit)s %(what)s; you use %(used)s and this needs %(extra)s more.") % values
    )


def set_limits(user: User, limits: dict[str, int | None], by: User | None = None) -> Quota:
    """Set the customer's own limits (staff, never on their own account: OwnAccount); the change is recorded
    in the activity log."""
    _refuse_own(user, by)
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # one change at a time per customer
        quota = quota_for(user)
        for name in Quota.RESOURCES:
            if name in limits:
                setattr(quota, name, limits[name])
        quota.save()
        activity.record(
            ActivityEvent.Type.QUOTA_CHANGED,
            summary=gettext_noop(
                "Quota set: %(servers)s servers, %(vcpus)s vCPUs, %(memory_mib)s MiB of memory, "
                "%(disk_gib)s GiB of disk, %(snapshots)s snapshots, %(extra_ipv4)s additional IPv4 addresses."
            ),
            data={name: "-" if value is None else value for name, value in quota.limits().items()},
            account=user,
            actor=by,
            target=f"user:{user.pk}",
            staff_action=by is not None,
        )
    user.quota = quota  # what limits_of() reads from this instance from now on
    return quota


def lift_amount() -> Decimal:
    """What an account's settled payments must add up to before its new-account limits are lifted:
    NEW_ACCOUNT_LIFT_AMOUNT, or else the monthly price of the cheapest plan on sale (with no plan on sale,
    any payment lifts them)."""
    if settings.NEW_ACCOUNT_LIFT_AMOUNT is not None:
        return quantize(settings.NEW_ACCOUNT_LIFT_AMOUNT)
    return prices.cheapest_monthly_price() or quantize(Decimal("0"))


def lift_new_account_limits_when_paid(user: User) -> bool:
    """After a payment: lift the account's new-account limits once its settled payments reach
    lift_amount(). Runs in billing's transaction, under the account's row lock, so concurrent payments are
    summed one after the other; the lift itself is a conditional update (True only for the call that
    lifted them). A payment below the amount changes nothing."""
    if not User.objects.filter(pk=user.pk, new_account_limits=True).exists():
        return False
    paid, needed = ledger.total_paid(user), lift_amount()
    if paid < needed:
        return False
    return lift_new_account_limits(user, paid=paid)


def lift_new_account_limits(user: User, by: User | None = None, paid: Decimal | None = None) -> bool:
    """Clear the account's new-account limits (staff by hand, or payments reaching lift_amount()).
    Idempotent: True only for the call that lifted them, which records it in the activity log. Staff cannot
    lift their own (OwnAccount)."""
    _refuse_own(user, by)
    if by is not None:
        summary, data = gettext_noop("New-account limits lifted by staff."), {}
    else:
        summary = gettext_noop("New-account limits lifted: payments reached %(amount)s %(currency)s.")
        data = {"amount": str(quantize(paid or Decimal("0"))), "currency": currency()}
    with transaction.atomic():
        lifted = User.objects.filter(pk=user.pk, new_account_limits=True).update(new_account_limits=False)
        if lifted:
            activity.record(
                ActivityEvent.Type.LIMITS_LIFTED,
                summary=summary,
                data=data,
                account=user,
                actor=by,
                target=f"user:{user.pk}",
                staff_action=by is not None,
            )
    user.new_account_limits = False
    return bool(lifted)


def impose_new_account_limits(user: User, by: User) -> bool:
    """Staff put an account back under the new-account limits (recorded as a quota change); not their own
    (OwnAccount)."""
    _refuse_own(user, by)
    with transaction.atomic():
        imposed = User.objects.filter(pk=user.pk, new_account_limits=False).update(new_account_limits=True)
        if imposed:
            activity.record(
                ActivityEvent.Type.QUOTA_CHANGED,
                summary=gettext_noop("New-account limits put in force again."),
                account=user,
                actor=by,
                target=f"user:{user.pk}",
                staff_action=True,
            )
    user.new_account_limits = True
    return bool(imposed)


NAMES = {
    "servers": gettext_lazy("Servers"),
    "vcpus": gettext_lazy("vCPUs"),
    "memory_mib": gettext_lazy("Memory (MiB)"),
    "disk_gib": gettext_lazy("Disk (GiB)"),
    "snapshots": gettext_lazy("Snapshots"),
    "extra_ipv4": gettext_lazy("Additional IPv4 addresses"),
    "backups": gettext_lazy("Backups kept"),
}


def new_account_rows() -> list[dict]:
    """NEW_ACCOUNT_QUOTA as rows for the pages."""
    return [
        {"name": name, "label": NAMES[name], "limit": settings.NEW_ACCOUNT_QUOTA.get(name)}
        for name in Quota.RESOURCES
    ]


def quota_rows(user: User) -> list[dict]:
    """The quota report as rows for the pages."""
    return [{"name": name, "label": NAMES[name], **values} for name, values in report(user).items()]
