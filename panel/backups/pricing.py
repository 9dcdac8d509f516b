"""How backups are billed: as the subscription add-on `backup` (billing.addons), at the admins' share of the
server's plan's monthly list price. The policy service and a resize (the price follows the plan) use it."""

from __future__ import annotations

from decimal import Decimal

from billing import addons
from billing.models import AddonKind, Plan
from panel.models import BackupPolicy, Server
from panel.servers.locks import LockOrder

ADDON_KIND = AddonKind.BACKUP
ADDON_KEY = "backups"


def price_for_plan(plan: Plan) -> Decimal:
    """What backups of a server on `plan` cost a month (0 when no share is set)."""
    return addons.backup_price(plan.price_monthly)


def price_monthly(server: Server) -> Decimal:
    """What backups of the server cost a month: the admins' share of its plan's monthly list price, rounded
    to the currency."""
    return price_for_plan(server.plan)


def reprice(server: Server, plan: Plan, locks: LockOrder) -> None:
    """The server moves to `plan` (a resize, in the caller's transaction, after the customer and the
    server): an enabled policy's add-on goes on at the new plan's backup price from now, the difference
    for the rest of the period invoiced (billing.addons.reprice_addon). Nothing when backups are off."""
    if BackupPolicy.objects.filter(pk=server.pk, enabled=True).exists():
        locks.reprice_addon(str(server.pk), ADDON_KEY, price_for_plan(plan))
