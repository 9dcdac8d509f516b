"""Per-customer quotas, checked in the same transaction as the order or resize that would exceed them
(the caller holds the customer's row lock, so concurrent orders are counted one after the other)."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import Server, Snapshot, User
from .models.quotas import Quota

LABELS = {
    "servers": gettext_lazy("servers"),
    "vcpus": gettext_lazy("vCPUs"),
    "memory_mib": gettext_lazy("MiB of memory"),
    "disk_gib": gettext_lazy("GiB of disk"),
    "snapshots": gettext_lazy("snapshots"),
}


def default_limits() -> dict[str, int | None]:
    return {name: settings.DEFAULT_QUOTA.get(name) for name in Quota.RESOURCES}


def quota_for(user: User) -> Quota:
    """The customer's quota row, made from the defaults on first use."""
    quota = Quota.objects.filter(user=user).first()
    if quota is None:
        quota, _created = Quota.objects.get_or_create(user=user, defaults=default_limits())
    return quota


def usage(user: User, resources: tuple[str, ...] = Quota.RESOURCES) -> dict[str, int]:
    """What the customer holds now (servers not deleted, their resources, their snapshots): the resources
    asked for, in one query for the servers and one for the snapshots."""
    totals: dict[str, int] = {}
    server_fields = [name for name in resources if name != "snapshots"]
    if server_fields:
        live = Server.objects.filter(owner=user).exclude(status=Server.Status.DELETED)
        aggregates = {
            "servers": Count("id"),
            "vcpus": Coalesce(Sum("vcpus"), 0),
            "memory_mib": Coalesce(Sum("memory_mib"), 0),
            "disk_gib": Coalesce(Sum("disk_gib"), 0),
        }
        totals.update(live.aggregate(**{name: aggregates[name] for name in server_fields}))
    if "snapshots" in resources:
        totals["snapshots"] = (
            Snapshot.objects.filter(server__owner=user).exclude(server__status=Server.Status.DELETED).count()
        )
    return totals


def report(user: User) -> dict[str, dict[str, int | None]]:
    """{resource: {limit, used}} as the API and the pages show it."""
    limits = limits_of(user)
    used = usage(user)
    return {name: {"limit": limits[name], "used": used[name]} for name in Quota.RESOURCES}


class QuotaExceeded(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def limits_of(user: User) -> dict[str, int | None]:
    """The customer's limits: their quota row, or the defaults while they have none (read, not created)."""
    try:
        quota = user.quota
    except Quota.DoesNotExist:
        return default_limits()
    return quota.limits()


def check(user: User, more: dict[str, int]) -> None:
    """Raise QuotaExceeded naming the first quota that `more` (added to the current usage) would exceed.
    Only the resources that grow and have a limit are counted."""
    limits = limits_of(user)
    counted = tuple(name for name, extra in more.items() if extra > 0 and limits.get(name) is not None)
    if not counted:
        return
    used = usage(user, counted)
    for name in counted:
        limit, extra = limits[name], more[name]
        if used[name] + extra > limit:
            raise QuotaExceeded(
                _("Your quota allows %(limit)s %(what)s; you use %(used)s and this needs %(extra)s more.")
                % {"limit": limit, "what": LABELS[name], "used": used[name], "extra": extra}
            )


def set_limits(user: User, limits: dict[str, int | None]) -> Quota:
    quota = quota_for(user)
    for name in Quota.RESOURCES:
        if name in limits:
            setattr(quota, name, limits[name])
    quota.save()
    user.quota = quota  # what limits_of() reads from this instance from now on
    return quota


NAMES = {
    "servers": gettext_lazy("Servers"),
    "vcpus": gettext_lazy("vCPUs"),
    "memory_mib": gettext_lazy("Memory (MiB)"),
    "disk_gib": gettext_lazy("Disk (GiB)"),
    "snapshots": gettext_lazy("Snapshots"),
}


def quota_rows(user: User) -> list[dict]:
    """The quota report as rows for the pages."""
    return [{"name": name, "label": NAMES[name], **values} for name, values in report(user).items()]
