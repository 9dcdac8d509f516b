"""Subscriptions: what a customer pays for one server, from the order to its end. A monthly subscription's
first month is invoiced when it opens (billing.cycle renews it); an hourly one bills its hours at each
month's end. A plan change is prorated and can be undone when the resize fails."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from . import rows, signals
from .errors import InsufficientCredit
from .invoices import Line, issue_invoice, settle, void_invoice, void_locked
from .ledger import balance, lock, post
from .models import Invoice, InvoiceLine, LedgerEntry, Plan, Subscription, SubscriptionAddon
from .money import ZERO, currency, format_money, quantize
from .parties import locked_parties
from .periods import add_month
from .prices import first_period_price, hourly_price, monthly_price, proration
from .texts import Message, date_value

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


def require_credit(account: AbstractBaseUser, plan: Plan) -> None:
    """Prepaid orders: the balance must cover the first month. Call with the account's row locked."""
    needed = first_period_price(account, plan)
    have = balance(account)
    if have < needed:
        raise InsufficientCredit(
            _("Insufficient credit: the first month costs %(price)s and your balance is %(balance)s.")
            % {"price": format_money(needed), "balance": format_money(have)}
        )


def open_subscription(
    account: AbstractBaseUser,
    plan: Plan,
    reference: str,
    label: str,
    *,
    cycle: str = Subscription.Cycle.MONTHLY,
    at: datetime | None = None,
) -> Subscription:
    """Start billing a server. Monthly: the first month is invoiced at once (paid from credit if any). The
    account's row is locked first (free when the caller holds it), in the statement that reads its billing
    terms and what its invoice records of it."""
    at = at or timezone.now()
    local = timezone.localtime(at)
    with transaction.atomic(savepoint=False):
        parties = locked_parties(account)
        if cycle == Subscription.Cycle.MONTHLY:
            price = monthly_price(account, plan, parties.terms)
        else:
            price = hourly_price(account, plan, parties.terms)
        subscription = Subscription(
            account=account,
            reference=reference,
            label=label,
            plan=plan,
            cycle=cycle,
            price=price,
            currency=currency(),
            started_at=at,
            period_start=at,
            paid_through=add_month(local, local.day) if cycle == Subscription.Cycle.MONTHLY else at,
        )
        rows.insert([subscription])
        if cycle == Subscription.Cycle.MONTHLY:
            line = plan_line(subscription, at, subscription.paid_through)
            # Mailed INVOICE_MAIL_DELAY_SECONDS later: its PDF costs more CPU than the whole order, and the
            # server it pays for boots first.
            issue_invoice(account, [line], at, parties, mail_delay=settings.INVOICE_MAIL_DELAY_SECONDS)
    return subscription


def plan_line(subscription: Subscription, start: datetime, end: datetime) -> Line:
    """The invoice line of one monthly period of a subscription."""
    return Line(
        kind=InvoiceLine.Kind.PLAN,
        description=Message(
            gettext_noop("%(plan)s for %(server)s, %(start)s to %(end)s"),
            {
                "plan": subscription.plan.name,
                "server": subscription.label,
                "start": date_value(start),
                "end": date_value(end),
            },
        ),
        unit_price=subscription.price,
        subscription=subscription,
        period_start=start,
        period_end=end,
    )


def active_subscription(reference: str) -> Subscription | None:
    return Subscription.objects.filter(reference=reference).exclude(status=Subscription.Status.ENDED).first()


def lock_subscription(reference: str) -> Subscription | None:
    """Lock the live subscription of a server, after its account's row: the order in which every billing
    step takes the two locks, so that two steps never wait on each other (billing.addons too). None when
    the server has no live subscription."""
    live = Subscription.objects.filter(reference=reference).exclude(status=Subscription.Status.ENDED)
    account_id = live.values_list("account_id", flat=True).first()
    if account_id is None:
        return None
    lock(get_user_model()(pk=account_id))
    return live.select_for_update(of=("self",)).first()


def change_plan(
    reference: str, new_plan: Plan, at: datetime | None = None, quoted: Decimal | None = None
) -> dict:
    """Move a server's subscription to another plan. Monthly: an upgrade is invoiced pro rata for the rest
    of the period, a downgrade credited (PRORATE_DOWNGRADE_CREDIT); `quoted` is the amount the customer
    was shown and accepted (a signed quote a few minutes old), charged instead of today's. Hourly: each
    plan bills its own hours. Returns what to undo it with if the resize fails."""
    at = at or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(reference)
        if subscription is None:
            return {}
        undo = {"plan": subscription.plan.slug, "price": str(subscription.price), "cycle": subscription.cycle}
        if subscription.cycle == Subscription.Cycle.HOURLY:
            Subscription.objects.filter(pk=subscription.pk).update(
                status=Subscription.Status.ENDED, ended_at=at
            )
            new = open_subscription(
                subscription.account,
                new_plan,
                reference,
                subscription.label,
                cycle=Subscription.Cycle.HOURLY,
                at=at,
            )
            carried = _carry_addons(subscription, new, at)
            return {**undo, "ended": subscription.pk, "opened": new.pk, "addons": carried}
        amount = proration(subscription, new_plan, at) if quoted is None else quantize(quoted)
        Subscription.objects.filter(pk=subscription.pk).update(
            plan=new_plan, price=monthly_price(subscription.account, new_plan)
        )
        if amount > 0:
            invoice = issue_invoice(
                subscription.account,
                [
                    Line(
                        kind=InvoiceLine.Kind.PRORATION,
                        description=Message(
                            gettext_noop("Upgrade of %(server)s to %(plan)s for the rest of the period"),
                            {"server": subscription.label, "plan": new_plan.name},
                        ),
                        unit_price=amount,
                        subscription=subscription,
                        period_start=at,
                        period_end=subscription.paid_through,
                    )
                ],
                at,
            )
            undo["invoice"] = invoice.pk
        elif amount < 0 and settings.PRORATE_DOWNGRADE_CREDIT:
            entry = post(
                subscription.account,
                LedgerEntry.Kind.CREDIT,
                -amount,
                Message(
                    gettext_noop("Downgrade of %(server)s to %(plan)s"),
                    {"server": subscription.label, "plan": new_plan.name},
                ),
            )
            undo["credit"] = entry.pk
            settle(subscription.account, at)
        return undo


def _carry_addons(old: Subscription, new: Subscription, at: datetime) -> list[int]:
    """An hourly plan change: the add-ons of the ended subscription go on with the new one from `at`, at
    the price they started at (each subscription bills its own hours of them). Returns the ended ones'
    ids, for undo_plan_change."""
    running = list(SubscriptionAddon.objects.filter(subscription=old).active())
    if not running:
        return []
    SubscriptionAddon.objects.filter(pk__in=[addon.pk for addon in running]).end(at)
    SubscriptionAddon.objects.bulk_create(
        [
            SubscriptionAddon(
                subscription=new,
                kind=addon.kind,
                key=addon.key,
                label=addon.label,
                price=addon.price,
                started_at=max(at, addon.started_at),
            )
            for addon in running
        ]
    )
    return [addon.pk for addon in running]


def _uncarry_addons(old_pk: int, opened_pk: int, carried: list[int]) -> None:
    """Undo _carry_addons before the opened subscription is deleted: each carried add-on runs on (or ended)
    as its copy on the opened subscription did meanwhile; one started there meanwhile moves to the old
    subscription."""
    ended = {addon.key: addon for addon in SubscriptionAddon.objects.filter(pk__in=carried)}
    for copy in SubscriptionAddon.objects.filter(subscription_id=opened_pk).order_by("pk"):
        original = ended.pop(copy.key, None)  # the first copy of the key is the carried one
        if original is not None:
            copy.delete()
            SubscriptionAddon.objects.filter(pk=original.pk).update(ended_at=copy.ended_at)
        else:
            SubscriptionAddon.objects.filter(pk=copy.pk).update(subscription_id=old_pk)


RESIZE_FAILED = gettext_noop("Resize failed")


def undo_plan_change(reference: str, undo: dict) -> None:
    """Put a subscription back as it was before change_plan (the resize failed)."""
    if not undo:
        return
    with transaction.atomic():
        if "opened" in undo:
            _uncarry_addons(undo["ended"], undo["opened"], undo.get("addons") or [])
            Subscription.objects.filter(pk=undo["opened"]).delete()
            Subscription.objects.filter(pk=undo["ended"]).update(
                status=Subscription.Status.ACTIVE, ended_at=None
            )
            return
        subscription = lock_subscription(reference)
        if subscription is None:
            return
        Subscription.objects.filter(pk=subscription.pk).update(
            plan=Plan.objects.get(slug=undo["plan"]), price=Decimal(undo["price"])
        )
        if "invoice" in undo:
            invoice = Invoice.objects.get(pk=undo["invoice"])
            if invoice.status == Invoice.Status.OPEN:
                void_invoice(invoice, reason=Message(RESIZE_FAILED))
            elif invoice.status == Invoice.Status.PAID:
                post(
                    subscription.account,
                    LedgerEntry.Kind.CREDIT,
                    invoice.total,
                    Message(RESIZE_FAILED),
                    invoice=invoice,
                )
        if "credit" in undo:
            credit = LedgerEntry.objects.get(pk=undo["credit"])
            post(subscription.account, LedgerEntry.Kind.ADJUSTMENT, -credit.amount, Message(RESIZE_FAILED))


def cancel_unused_subscription(reference: str, at: datetime | None = None) -> bool:
    """The server never became usable (its create failed): end its subscription and take back what it was
    charged. An open invoice of it is voided; a paid one is credited back to the balance. Idempotent: the
    subscription's move to ended is the guard, so a retry (or a crash before the commit) charges nothing
    back twice. Returns whether anything was cancelled now."""
    at = at or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(reference)
        if subscription is None:
            return False
        Subscription.objects.filter(pk=subscription.pk).update(status=Subscription.Status.ENDED, ended_at=at)
        SubscriptionAddon.objects.filter(subscription=subscription).end(
            at
        )  # their lines are taken back below
        account = subscription.account
        lines = InvoiceLine.objects.filter(subscription=subscription).select_related("invoice")
        invoices = {line.invoice_id: line.invoice for line in lines}
        reason = Message(gettext_noop("%(server)s could not be created"), {"server": subscription.label})
        for invoice in invoices.values():
            own = [line for line in lines if line.invoice_id == invoice.pk]
            only_this = (
                not InvoiceLine.objects.filter(invoice=invoice).exclude(subscription=subscription).exists()
            )
            if invoice.status == Invoice.Status.OPEN and only_this:
                void_locked(invoice, reason=reason)
                signals.invoice_voided.send(sender=None, account=account, invoice=invoice, by=None)
            elif invoice.status in (Invoice.Status.OPEN, Invoice.Status.PAID):
                amount = sum((line.amount for line in own), ZERO)
                if amount:
                    post(account, LedgerEntry.Kind.CREDIT, amount, reason, invoice=invoice)
        settle(account, at)
        return True


def end_subscription(reference: str, at: datetime | None = None) -> None:
    """The server was deleted: stop billing it and its add-ons (hourly hours are invoiced at the month's
    end; nothing of a paid month is credited, for the plan or an add-on)."""
    at = at or timezone.now()
    live = Subscription.objects.filter(reference=reference).exclude(status=Subscription.Status.ENDED)
    with transaction.atomic():
        SubscriptionAddon.objects.filter(subscription__in=live).end(at)
        live.update(status=Subscription.Status.ENDED, ended_at=at)
