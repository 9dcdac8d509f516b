"""The panel's answers to billing's signals: suspend, unsuspend and delete the servers of a
subscription (billing knows them only by reference); record payments and staff's billing actions in the
activity log (an admin's change of the seller's profile on the admins' audit log), and lift an account's
new-account limits once its payments reach NEW_ACCOUNT_LIFT_AMOUNT (or the cheapest plan's monthly
price). These receivers run inside billing's transaction, so the record commits or rolls back with the
change."""

from __future__ import annotations

import logging
import uuid

from django.dispatch import receiver
from django.utils.translation import gettext_noop

from billing import signals, subjects
from billing.money import quantize
from panel.accounts import quotas
from panel.activity import log as activity
from panel.models import ActivityEvent, Server
from panel.servers import actions
from panel.servers.states import SuspendedBy

log = logging.getLogger(__name__)


@subjects.register
def live_servers(account, references: list[str]) -> dict[str, Server]:
    """The account's live servers by subscription reference, for billing's pages."""
    ids = []
    for reference in references:
        try:
            ids.append(uuid.UUID(reference))
        except ValueError:
            continue
    servers = Server.objects.filter(owner=account, id__in=ids).exclude(status=Server.Status.DELETED)
    return {str(server.id): server for server in servers}


def _servers(references):
    return Server.objects.filter(id__in=list(references)).select_related("host")


@receiver(signals.account_suspended)
def suspend_for_billing(sender, account, references, **kwargs) -> None:
    live = [Server.Status.RUNNING, Server.Status.STOPPED, Server.Status.RESCUE]
    for server in _servers(references).filter(status__in=live):
        try:
            reason = gettext_noop("Suspended: an invoice is overdue. Pay it to resume the server.")
            actions.suspend_server(server, reason, by=SuspendedBy.BILLING)
        except actions.ActionError as exc:
            log.warning("could not suspend %s for billing now: %s", server.id, exc.message)


@receiver(signals.account_unsuspended)
def unsuspend_after_payment(sender, account, references, **kwargs) -> None:
    for server in _servers(references).filter(
        status=Server.Status.SUSPENDED, suspended_by=SuspendedBy.BILLING
    ):
        try:
            actions.unsuspend_server(server)
        except actions.ActionError as exc:
            log.warning("could not unsuspend %s after payment now: %s", server.id, exc.message)


@receiver(signals.subscriptions_terminated)
def delete_terminated(sender, account, references, **kwargs) -> None:
    for server in _servers(references).exclude(status__in=[Server.Status.DELETED, Server.Status.DELETING]):
        try:
            actions.delete_server(server, None)
        except actions.ActionError as exc:
            log.warning("could not delete terminated %s now: %s", server.id, exc.message)


def _by_staff(account, by) -> bool:
    return by is not None and getattr(by, "is_panel_staff", False) and by.pk != account.pk


@receiver(signals.payment_recorded)
def record_payment_and_lift_limits(sender, account, payment, by=None, **kwargs) -> None:
    activity.record(
        ActivityEvent.Type.PAYMENT,
        summary=gettext_noop("Payment %(reference)s of %(money)s received."),
        data={
            "reference": payment.reference,
            "amount": str(quantize(payment.amount)),
            "currency": payment.currency,
        },
        account=account,
        actor=by,
        target=f"payment:{payment.pk}",
        staff_action=_by_staff(account, by),
    )
    quotas.lift_new_account_limits_when_paid(account)  # once the payments reach the amount, and only once


@receiver(signals.checkout_refused)
def record_refused_payment(sender, account, checkout, reason, **kwargs) -> None:
    """A provider's payment billing could not credit as it is: on the customer's log for staff, with the
    provider's reference to look it up by."""
    activity.record(
        ActivityEvent.Type.PAYMENT_REFUSED,
        summary=gettext_noop("%(provider)s payment %(reference)s of %(money)s not credited: %(reason)s."),
        data={
            "provider": checkout.provider,
            "reference": checkout.reference,
            "amount": str(quantize(checkout.amount)),
            "currency": checkout.currency,
            "reason": reason,
        },
        account=account,
        target=f"checkout:{checkout.pk}",
        staff_action=False,
    )


@receiver(signals.balance_adjusted)
def record_adjustment(sender, account, entry, by=None, **kwargs) -> None:
    activity.record(
        ActivityEvent.Type.CREDIT,
        summary=gettext_noop("Balance adjusted by %(money)s (%(reason)s)."),
        data={"amount": str(entry.amount), "currency": entry.currency, "reason": entry.reason},
        account=account,
        actor=by,
        target=f"user:{account.pk}",
        staff_action=_by_staff(account, by),
    )


@receiver(signals.billing_terms_changed)
def record_billing_terms(sender, account, profile, by=None, **kwargs) -> None:
    prices = ", ".join(f"{slug} {price}" for slug, price in sorted(profile.custom_prices.items())) or "-"
    activity.record(
        ActivityEvent.Type.BILLING_TERMS,
        summary=gettext_noop("Billing terms set: %(discount)s%% discount; custom prices: %(prices)s."),
        data={"discount": str(profile.discount_percent), "prices": prices},
        account=account,
        actor=by,
        target=f"user:{account.pk}",
        staff_action=_by_staff(account, by),
    )


@receiver(signals.invoice_voided)
def record_void(sender, account, invoice, by=None, **kwargs) -> None:
    activity.record(
        ActivityEvent.Type.INVOICE_VOIDED,
        summary=gettext_noop("Invoice %(number)s voided."),
        data={"number": invoice.number or ""},
        account=account,
        actor=by,
        target=f"invoice:{invoice.pk}",
        staff_action=_by_staff(account, by),
    )


@receiver(signals.withholding_recorded)
def record_withholding(sender, account, slip, by=None, **kwargs) -> None:
    activity.record(
        ActivityEvent.Type.WITHHOLDING,
        summary=gettext_noop(
            "Tax withheld (PPh 23) of %(money)s recorded on invoice %(number)s, slip %(slip)s."
        ),
        data={
            "amount": str(quantize(slip.amount)),
            "currency": slip.invoice.currency,
            "number": slip.invoice.number or "",
            "slip": slip.number,
        },
        account=account,
        actor=by,
        target=f"invoice:{slip.invoice_id}",
        staff_action=_by_staff(account, by),
    )


@receiver(signals.credit_note_issued)
def record_credit_note(sender, account, note, by=None, **kwargs) -> None:
    activity.record(
        ActivityEvent.Type.CREDIT_NOTE,
        summary=gettext_noop("Credit note %(note)s of %(money)s issued for invoice %(number)s."),
        data={
            "amount": str(quantize(note.total)),
            "currency": note.currency,
            "note": note.number,
            "number": note.invoice.number or "",
        },
        account=account,
        actor=by,
        target=f"invoice:{note.invoice_id}",
        staff_action=_by_staff(account, by),
    )


@receiver(signals.seller_profile_changed)
def record_seller_profile(sender, profile, changed, by=None, **kwargs) -> None:
    """On the admins' audit log: which fields of the seller's profile changed, with their new values (the
    account number too: it is what customers are told to pay to, so a change of it must be traceable)."""
    values = "; ".join(f"{name}={getattr(profile, name)!r}" for name in changed)
    activity.record(
        ActivityEvent.Type.SELLER_PROFILE,
        summary=gettext_noop("Seller and payment details changed: %(values)s."),
        data={"values": values},
        actor=by,
        target="billing:seller-profile",
        staff_action=True,
    )
