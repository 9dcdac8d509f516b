"""Subscription add-ons: what a server is billed for besides its plan, through its subscription (billing
knows the server only as the subscription's `reference`). An additional IPv4 address is one; backups are
another.

Prices. Admins set each kind's monthly price on the billing settings page (`set_addon_price`). A kind
without a price is free (`addon_price` answers 0): nothing is invoiced for it, and the prepaid check asks
for nothing. An add-on keeps the price it started at while it runs, as a subscription keeps its plan's; a
new price applies to add-ons started from then on. Customer discounts and custom prices are for plans and
do not apply to add-ons. Backups are priced as a share of the server's plan's monthly list price instead
(`set_backup_share`, `backup_price`): the caller passes the price it computed to `start_addon` and
`require_addon_credit`, and when the server's plan changes `reprice_addon` moves the running add-on to
the new plan's price (the difference for the rest of the period invoiced, as a plan change is).

Billing follows the subscription's cycle:

- Monthly: starting an add-on invoices the rest of the current paid period pro rata at once (the
  microsecond arithmetic of a plan change, `billing.prices.rest_of_period`); each renewal
  (`billing.cycle`) invoices each add-on that runs in the new period on a line of the renewal's invoice,
  at its price (pro rata for a part of the period, when it started or ended inside it). Ending one credits
  the unused rest of the paid period only when PRORATE_DOWNGRADE_CREDIT is on, as a plan downgrade does.
- Hourly: nothing is charged at once; at the month's end its hours are invoiced with the plan's
  (`billing.cycle.invoice_hourly`) at its monthly price / ADDON_HOURS_PER_MONTH an hour, never more than
  its monthly price in one month, as the plans' hourly prices are set (a month's price / 672 h).
- Suspended subscriptions go on being billed for their add-ons as for their plan. A subscription that ends
  (the server deleted, never usable, terminated by dunning) ends its add-ons with it; an hourly plan change
  carries them to the new subscription (billing.subscriptions).

Moving an add-on to another server of the same customer (`move_addon`, an address that floats) ends it on
one subscription and starts it on the other at the same moment, keeping its price, so that each moment is
paid once: what was paid for the rest of the old subscription's period and what the new subscription's
period costs from now are set against each other, and only the difference is invoiced (or, when less is
owed, credited, whatever PRORATE_DOWNGRADE_CREDIT says). That is the credit of the old part and the charge
of the new one in one movement: the tax of the part already paid is not charged a second time.

Every change locks the account's row, then the subscription (`billing.subscriptions.lock_subscription`),
and takes an invoice number last (`issue_invoice`), so these functions may be called inside the caller's
transaction after it locked the customer (panel.servers.locks); each is all or nothing, and idempotent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from . import signals
from .errors import BillingError, InsufficientCredit
from .invoices import Line, issue_invoice, settle
from .ledger import balance, post
from .models import AddonKind, AddonPrice, InvoiceLine, LedgerEntry, Subscription, SubscriptionAddon
from .money import CURRENCY_EXPONENTS, ZERO, currency, format_money, quantize
from .prices import rest_of_period, share
from .subscriptions import lock_subscription
from .texts import Message, date_value

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

# An add-on's hourly price is its monthly price over this many hours (28 days), as the plans' are: a month
# of hours reaches the monthly price, which caps it.
ADDON_HOURS_PER_MONTH = 672
HOUR = timedelta(hours=1)

PERIOD_LINE = gettext_noop("%(addon)s for %(server)s, %(start)s to %(end)s")
HOURS_LINE = gettext_noop("%(addon)s for %(server)s, %(start)s to %(end)s (%(hours)s h)")
MOVED_LINE = gettext_noop(
    "%(addon)s moved from %(old)s to %(server)s: %(start)s to %(end)s, less the part already paid on %(old)s"
)
MOVED_CREDIT = gettext_noop(
    "%(addon)s moved from %(old)s to %(server)s: credit for the part already paid on %(old)s"
)
ENDED_CREDIT = gettext_noop("%(addon)s removed from %(server)s: the unused part of the period credited")


# What a kind is called inside a sentence ("... costs Rp11,000 ..."), for the prepaid check's message.
KIND_IN_A_SENTENCE = {
    AddonKind.IPV4: gettext_noop("an additional IPv4 address"),
    AddonKind.BACKUP: gettext_noop("the backup service"),
}
REPRICED_LINE = gettext_noop(
    "%(addon)s for %(server)s at its new price: %(start)s to %(end)s, less the part already paid"
)
REPRICED_CREDIT = gettext_noop("%(addon)s for %(server)s at its new price: the unused part of the old one")
# The most a share may be, in percent of the plan's price.
SHARE_MAX = Decimal("100")


def _check_kind(kind: str) -> None:
    if kind not in AddonKind.values:
        raise ValueError(f"unknown add-on kind {kind!r}")


# Prices.


def addon_price(kind: str, account: AbstractBaseUser | None = None) -> Decimal:
    """The monthly price of an add-on of `kind` (0: free, also when admins have set none). `account` is
    accepted for per-customer prices; today every customer pays the same."""
    _check_kind(kind)
    price = AddonPrice.objects.filter(kind=kind).values_list("price", flat=True).first()
    return ZERO if price is None else quantize(price)


def addon_prices() -> dict[str, AddonPrice | None]:
    """Every kind's price row (None: never set, free), for the settings page; one query."""
    rows = {row.kind: row for row in AddonPrice.objects.select_related("updated_by")}
    return {kind: rows.get(kind) for kind in AddonKind.values}


def set_addon_price(kind: str, price: Decimal, actor: AbstractBaseUser | None) -> AddonPrice:
    """An admin sets the monthly price of a kind (0 makes it free). It applies to add-ons started from now
    on; running ones keep theirs. Sends `signals.addon_price_changed` in the transaction when it changed,
    so that what its receivers record commits with it."""
    _check_kind(kind)
    price = Decimal(price)
    if price < 0:
        raise BillingError(_("A price cannot be negative."))
    if quantize(price) != price:
        places = CURRENCY_EXPONENTS.get(currency(), 2)
        raise BillingError(
            _("%(currency)s has no minor unit: give a whole amount.") % {"currency": currency()}
            if places == 0
            else _("Give at most %(places)s decimals.") % {"places": places}
        )
    with transaction.atomic():
        # A kind without a row is free: its row is made at 0 (nothing changes) and locked, so that two
        # admins saving at once write one after the other.
        row, _created = AddonPrice.objects.select_for_update().get_or_create(
            kind=kind, defaults={"price": ZERO}
        )
        previous = row.price
        if previous == price:
            return row
        row.price, row.updated_by, row.updated_at = price, actor, timezone.now()
        row.save(update_fields=["price", "updated_by", "updated_at"])
        signals.addon_price_changed.send(sender=None, kind=kind, price=price, previous=previous, by=actor)
    return row


def backup_share() -> Decimal | None:
    """The percent of a plan's monthly list price that backups cost a month (None: admins set none, and
    backups are free)."""
    return AddonPrice.objects.filter(kind=AddonKind.BACKUP).values_list("share_percent", flat=True).first()


def set_backup_share(percent: Decimal | None, actor: AbstractBaseUser | None) -> AddonPrice:
    """An admin sets the share of the plan's monthly price that backups cost (None or 0: free). As with
    prices, it applies to backup add-ons started from now on; running ones keep their price until the
    server's plan changes. BillingError for a share below 0, above SHARE_MAX or with more than two
    decimals."""
    if percent is not None:
        percent = Decimal(percent)
        if not 0 <= percent <= SHARE_MAX:
            raise BillingError(
                _("Give a percent from 0 to %(max)s.") % {"max": format(SHARE_MAX.normalize(), "f")}
            )
        if percent.quantize(Decimal("0.01")) != percent:
            raise BillingError(_("Give at most %(places)s decimals.") % {"places": 2})
    with transaction.atomic():
        row, _created = AddonPrice.objects.select_for_update().get_or_create(
            kind=AddonKind.BACKUP, defaults={"price": ZERO}
        )
        if row.share_percent == percent:
            return row
        row.share_percent, row.updated_by, row.updated_at = percent, actor, timezone.now()
        row.save(update_fields=["share_percent", "updated_by", "updated_at"])
    return row


def backup_price(plan_price: Decimal, share: Decimal | None = None) -> Decimal:
    """What backups of a server whose plan lists `plan_price` a month cost a month: the backup share of it,
    rounded to the currency (0 without a share). Pass `share` when pricing many, to read it once."""
    share = backup_share() if share is None else share
    if not share:
        return quantize(ZERO)
    return quantize(Decimal(plan_price) * share / Decimal(100))


def require_addon_credit(
    account: AbstractBaseUser,
    kind: str,
    reference: str | None = None,
    at: datetime | None = None,
    price: Decimal | None = None,
) -> None:
    """BILLING_ORDER_POLICY "prepaid": the balance must cover what starting an add-on of `kind` charges now
    (call with the account's row locked, as for subscriptions.require_credit). With the server's
    `reference`, on a monthly subscription: the rest of its paid period pro rata; otherwise (an hourly
    subscription, no reference) a month of it, as an hourly order asks for a month of its plan. A free
    add-on asks for nothing. `price`: the monthly price it will start at when it is not the kind's
    (backups, priced from the server's plan). Raises InsufficientCredit."""
    at = at or timezone.now()
    price = addon_price(kind, account) if price is None else quantize(price)
    subscription = (
        Subscription.objects.filter(reference=reference).exclude(status=Subscription.Status.ENDED).first()
        if reference is not None
        else None
    )
    if subscription is not None and subscription.cycle == Subscription.Cycle.MONTHLY:
        needed = rest_of_period(subscription, price, at)
        message = _(
            "Insufficient credit: %(addon)s costs %(price)s for the rest of this billing period and your "
            "balance is %(balance)s."
        )
    else:
        needed = price
        message = _("Insufficient credit: %(addon)s costs %(price)s a month and your balance is %(balance)s.")
    if needed <= 0:
        return
    have = balance(account)
    if have < needed:
        raise InsufficientCredit(
            message
            % {
                "addon": _(KIND_IN_A_SENTENCE[kind]) if kind in KIND_IN_A_SENTENCE else AddonKind(kind).label,
                "price": format_money(needed),
                "balance": format_money(have),
            }
        )


# Starting, ending, moving.


def start_addon(
    reference: str,
    kind: str,
    key: str,
    label: str,
    at: datetime | None = None,
    price: Decimal | None = None,
) -> SubscriptionAddon | None:
    """Start billing an add-on on the server's subscription from `at` (now) at the kind's price, or at
    `price` when given (backups: a share of the server's plan's price, `backup_price`). A monthly
    subscription is invoiced the rest of its paid period pro rata at once (paid from credit if any); an
    hourly one bills its hours at the month's end. Idempotent: an active add-on with this `key` on the
    subscription is returned as it is, nothing charged again. None when the server has no live
    subscription (nothing to bill it with)."""
    _check_kind(kind)
    at = at or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(reference)
        if subscription is None:
            return None
        running = SubscriptionAddon.objects.filter(subscription=subscription, key=key).active().first()
        if running is not None:
            return running
        if price is None:
            price = addon_price(kind, subscription.account)
        return _start(subscription, kind, key, label, quantize(price), at)


def _start(
    subscription: Subscription, kind: str, key: str, label: str, price: Decimal, at: datetime
) -> SubscriptionAddon:
    """Insert the add-on and invoice the rest of the subscription's paid period (the caller holds the
    locks)."""
    addon = SubscriptionAddon.objects.create(
        subscription=subscription, kind=kind, key=key, label=label[:255], price=price, started_at=at
    )
    amount = rest_of_period(subscription, price, at)
    if amount > 0:
        line = _period_line(addon, subscription, at, subscription.paid_through, amount)
        issue_invoice(subscription.account, [line], at)
    return addon


def end_addon(reference: str, key: str, at: datetime | None = None) -> None:
    """Stop billing the server's add-on `key` from `at` (now). On a monthly subscription the unused rest of
    the paid period is credited only when PRORATE_DOWNGRADE_CREDIT is on (as for a plan downgrade).
    Idempotent: an add-on that is not running (or a server without a live subscription) changes
    nothing."""
    at = at or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(reference)
        if subscription is None:
            return
        addon = SubscriptionAddon.objects.filter(subscription=subscription, key=key).active().first()
        if addon is None or not _end(addon, at):
            return
        if settings.PRORATE_DOWNGRADE_CREDIT:
            unused = rest_of_period(subscription, addon.price, addon.ended_at)
            if unused > 0:
                reason = Message(ENDED_CREDIT, {"addon": _name_value(addon), "server": subscription.label})
                post(subscription.account, LedgerEntry.Kind.CREDIT, unused, reason, at=at)
                settle(subscription.account, at)


def _end(addon: SubscriptionAddon, at: datetime) -> bool:
    """End a running add-on at `at` (never before it started): a compare-and-swap on its end."""
    addon.ended_at = max(at, addon.started_at)
    return bool(
        SubscriptionAddon.objects.filter(pk=addon.pk, ended_at__isnull=True).update(ended_at=addon.ended_at)
    )


def move_addon(
    from_reference: str,
    to_reference: str,
    key: str,
    label: str,
    at: datetime | None = None,
    kind: str = AddonKind.IPV4,
) -> SubscriptionAddon | None:
    """The add-on `key` (an address) moves to another server of the same customer at `at` (now): it ends
    on the first server's subscription and starts on the second's, in one transaction, at the price it
    had. Each moment is paid once: the rest of the old period already paid and the rest of the new period
    are set against each other, and only the difference is invoiced on the new subscription, or credited
    when it is less (see the module's docstring). Idempotent: once moved, moving again changes nothing.
    When the first server has no such add-on running, it starts on the second as `start_addon` does (of
    `kind`); when the second has no live subscription it only ends on the first, its unused part credited.
    Returns the add-on on the second server's subscription (None without one)."""
    _check_kind(kind)
    at = at or timezone.now()
    with transaction.atomic():
        target_account = (
            Subscription.objects.filter(reference=to_reference)
            .exclude(status=Subscription.Status.ENDED)
            .values_list("account_id", flat=True)
            .first()
        )
        source = lock_subscription(from_reference)
        if source is not None and target_account is not None and source.account_id != target_account:
            raise BillingError(_("An add-on moves only between servers of one customer."))
        target = lock_subscription(to_reference) if to_reference != from_reference else source
        old = (
            SubscriptionAddon.objects.filter(subscription=source, key=key).active().first()
            if source is not None
            else None
        )
        there = (
            SubscriptionAddon.objects.filter(subscription=target, key=key).active().first()
            if target is not None
            else None
        )
        if old is not None and old == there:
            return there  # the same subscription: nothing moves
        if old is not None:
            _end(old, at)
        if target is None or there is not None:
            # Nowhere to bill it, or already billed there: only the old part is given back.
            if old is not None:
                unused = rest_of_period(source, old.price, old.ended_at)
                if unused > 0:
                    reason = Message(ENDED_CREDIT, {"addon": _name_value(old), "server": source.label})
                    post(source.account, LedgerEntry.Kind.CREDIT, unused, reason, at=at)
                    settle(source.account, at)
            return there
        if old is None:
            return _start(target, kind, key, label, addon_price(kind, target.account), at)
        new = SubscriptionAddon.objects.create(
            subscription=target, kind=old.kind, key=key, label=label[:255], price=old.price, started_at=at
        )
        paid = rest_of_period(source, old.price, old.ended_at)
        owed = rest_of_period(target, new.price, at)
        values = {"addon": _name_value(new), "old": source.label, "server": target.label}
        if owed > paid:
            line = Line(
                kind=InvoiceLine.Kind.ADDON,
                description=Message(
                    MOVED_LINE, {**values, "start": date_value(at), "end": date_value(target.paid_through)}
                ),
                unit_price=owed - paid,
                subscription=target,
                period_start=at,
                period_end=target.paid_through,
            )
            issue_invoice(target.account, [line], at)
        elif paid > owed:
            post(target.account, LedgerEntry.Kind.CREDIT, paid - owed, Message(MOVED_CREDIT, values), at=at)
            settle(target.account, at)
        return new


def reprice_addon(
    reference: str, key: str, price: Decimal, at: datetime | None = None
) -> SubscriptionAddon | None:
    """The server's running add-on `key` goes on at another monthly `price` from `at` (now): backups follow
    the price of the server's new plan. It ends and starts again at the same moment. On a monthly
    subscription the difference for the rest of the paid period is invoiced (a higher price) or, when
    PRORATE_DOWNGRADE_CREDIT is on, credited (a lower one), as a plan change is; on an hourly one each part
    bills its own hours. Idempotent: at the price it runs at, nothing changes. Returns the running add-on
    (None when none runs with this key)."""
    at = at or timezone.now()
    price = quantize(price)
    with transaction.atomic():
        subscription = lock_subscription(reference)
        if subscription is None:
            return None
        old = SubscriptionAddon.objects.filter(subscription=subscription, key=key).active().first()
        if old is None or quantize(old.price) == price:
            return old
        if not _end(old, at):
            return None
        new = SubscriptionAddon.objects.create(
            subscription=subscription, kind=old.kind, key=key, label=old.label, price=price,
            started_at=old.ended_at,
        )  # fmt: skip
        difference = rest_of_period(subscription, price - old.price, new.started_at)
        values = {"addon": _name_value(new), "server": subscription.label}
        if difference > 0:
            line = Line(
                kind=InvoiceLine.Kind.ADDON,
                description=Message(
                    REPRICED_LINE,
                    {
                        **values,
                        "start": date_value(new.started_at),
                        "end": date_value(subscription.paid_through),
                    },
                ),
                unit_price=difference,
                subscription=subscription,
                period_start=new.started_at,
                period_end=subscription.paid_through,
            )
            issue_invoice(subscription.account, [line], at)
        elif difference < 0 and settings.PRORATE_DOWNGRADE_CREDIT:
            post(
                subscription.account, LedgerEntry.Kind.CREDIT, -difference, Message(REPRICED_CREDIT, values),
                at=at,
            )  # fmt: skip
            settle(subscription.account, at)
        return new


# Invoice lines (billing.cycle).


def _name_value(addon: SubscriptionAddon):
    """The add-on's name among a stored text's values: its message's data (shown in the reader's
    language), or the label for a kind without one."""
    name = addon.name
    return name.data() if isinstance(name, Message) else name


def _line_values(
    addon: SubscriptionAddon, subscription: Subscription, start: datetime, end: datetime
) -> dict:
    """What an add-on's invoice line names: the add-on, the server and the period."""
    return {
        "addon": _name_value(addon),
        "server": subscription.label,
        "start": date_value(start),
        "end": date_value(end),
    }


def _period_line(
    addon: SubscriptionAddon, subscription: Subscription, start: datetime, end: datetime, amount: Decimal
) -> Line:
    return Line(
        kind=InvoiceLine.Kind.ADDON,
        description=Message(PERIOD_LINE, _line_values(addon, subscription, start, end)),
        unit_price=amount,
        subscription=subscription,
        period_start=start,
        period_end=end,
    )


def addons_for_renewal(subscriptions: list[Subscription]) -> dict[int, list[SubscriptionAddon]]:
    """The add-ons that may run in the periods about to be renewed (running, or ended after the paid
    periods end), by subscription id: one query for all of the subscriptions."""
    if not subscriptions:
        return {}
    since = min(subscription.paid_through for subscription in subscriptions)
    found: dict[int, list[SubscriptionAddon]] = defaultdict(list)
    for addon in SubscriptionAddon.objects.filter(subscription__in=[s.pk for s in subscriptions]).exclude(
        ended_at__lte=since
    ):
        found[addon.subscription_id].append(addon)
    return found


def renewal_lines(
    subscription: Subscription, addons: Iterable[SubscriptionAddon], start: datetime, end: datetime
) -> list[Line]:
    """The lines of a monthly period [start, end) for the add-ons that run in it: its price for the whole
    period, pro rata for the part an add-on ran (started or ended inside it); free ones add no line."""
    lines = []
    for addon in addons:
        begin = max(start, addon.started_at)
        finish = min(end, addon.ended_at) if addon.ended_at else end
        if finish <= begin:
            continue
        whole = (begin, finish) == (start, end)
        amount = addon.price if whole else share(addon.price, begin, finish, start, end)
        if quantize(amount) > 0:
            lines.append(_period_line(addon, subscription, begin, finish, amount))
    return lines


def hourly_addons(subscription: Subscription, start: datetime, end: datetime) -> list[SubscriptionAddon]:
    """The add-ons of an hourly subscription that ran in [start, end)."""
    return list(
        SubscriptionAddon.objects.filter(subscription=subscription, started_at__lt=end).exclude(
            ended_at__lte=start
        )
    )


def hourly_lines(
    subscription: Subscription, addons: Iterable[SubscriptionAddon], start: datetime, end: datetime
) -> list[Line]:
    """The lines of the add-ons' hours in [start, end) (one calendar month at most): every started hour
    at the monthly price / ADDON_HOURS_PER_MONTH, never more than the monthly price."""
    lines = []
    for addon in addons:
        begin = max(start, addon.started_at)
        finish = min(end, addon.ended_at) if addon.ended_at else end
        if finish <= begin:
            continue
        hours = math.ceil((finish - begin) / HOUR)
        unit = (addon.price / ADDON_HOURS_PER_MONTH).quantize(Decimal("0.0001"))
        quantity = hours
        if hours * unit > addon.price:  # never more than the monthly price in one month
            unit, quantity = addon.price, 1
        if quantize(unit * quantity) <= 0:
            continue
        lines.append(
            Line(
                kind=InvoiceLine.Kind.HOURLY,
                description=Message(
                    HOURS_LINE, {**_line_values(addon, subscription, begin, finish), "hours": hours}
                ),
                unit_price=unit,
                quantity=Decimal(quantity),
                subscription=subscription,
                period_start=begin,
                period_end=finish,
            )
        )
    return lines


# The billing page.


def running_addons(subscriptions: Iterable[Subscription]) -> dict[int, list[SubscriptionAddon]]:
    """The running add-ons of these subscriptions by subscription id (one query), each with its
    subscription set (no query to reach it)."""
    by_pk = {subscription.pk: subscription for subscription in subscriptions}
    found: dict[int, list[SubscriptionAddon]] = defaultdict(list)
    for addon in SubscriptionAddon.objects.filter(subscription__in=list(by_pk)).active():
        addon.subscription = by_pk[addon.subscription_id]
        found[addon.subscription_id].append(addon)
    return dict(found)
