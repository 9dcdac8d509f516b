"""`billing_run --at` twice for the same moment changes nothing the second time (invoices, ledger, mails,
operations, subscriptions), at every kind of step; and running it at many moments in order invoices the
same periods as running it once at the end (no period twice, none missed)."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import transaction

from billing import payments, subscriptions
from billing.models import Invoice, InvoiceLine, InvoiceSequence, LedgerEntry, Payment, Subscription
from panel import dispatch
from panel.models import Operation, Server
from panel.servers import operations
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at


@pytest.fixture(autouse=True)
def jakarta(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


@pytest.fixture
def dispatched(monkeypatch) -> list:
    sent: list = []
    monkeypatch.setattr(dispatch, "operation", lambda operation_id, *_where: sent.append(operation_id))
    return sent


def billing_run(moment) -> str:
    out = io.StringIO()
    call_command("billing_run", at=moment.isoformat(), stdout=out)
    return out.getvalue()


def state() -> dict:
    """Everything a billing run may change."""
    return {
        "invoices": sorted(
            Invoice.objects.values_list(
                "number", "status", "total", "paid_at", "reminded_at", "overdue_notified_at",
                "termination_warned_at",
            )
        ),
        "lines": InvoiceLine.objects.count(),
        "ledger": sorted(LedgerEntry.objects.values_list("account", "kind", "amount", "invoice")),
        "payments": Payment.objects.count(),
        "sequence": list(InvoiceSequence.objects.values_list("year", "last")),
        "subscriptions": sorted(
            Subscription.objects.values_list(
                "reference", "status", "plan", "period_start", "paid_through", "ended_at", "suspended_at"
            )
        ),
        "mails": [(m.to, m.subject) for m in mail.outbox],
        "operations": sorted(Operation.objects.values_list("server", "type", "status")),
        "servers": sorted(Server.objects.values_list("id", "status", "task", "suspended_by")),
    }  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_running_twice_for_the_same_moment_changes_nothing_the_second_time(catalog, dispatched):
    """Three accounts through the first months of a year: one never pays its monthly server (reminded,
    overdue, suspended, warned, terminated), one pays from credit, one runs an hourly server and stops
    paying too. At each moment the first run does something; the second does nothing."""
    plan = factories.make_plan("basic", price_monthly=Decimal("150000"), price_hourly=Decimal("250"))
    debtor, payer, hourly = (factories.make_user(password=None) for _ in range(3))
    servers = {}
    for user, name, cycle, started in [
        (debtor, "debtor1", "monthly", at(2026, 1, 31, 10)),
        (payer, "payer1", "monthly", at(2026, 1, 15, 8, 30)),
        (hourly, "hourly1", "hourly", at(2026, 1, 20, 13, 15)),
    ]:
        servers[user] = factories.make_server(user, catalog, name, plan=plan)
        if user is payer:
            payments.record_payment(payer, Decimal("1000000"), "BANK-PAYER", at=started)
        subscriptions.open_subscription(user, plan, str(servers[user].id), name, cycle=cycle, at=started)

    def worker_finishes(kind: str, **changes) -> None:
        for operation in Operation.objects.filter(type=kind, status="pending"):
            operations.finish(operation, **changes)

    steps = [
        (at(2026, 2, 1), "hourly usage of January"),
        (at(2026, 2, 4, 10), "reminder"),
        (at(2026, 2, 7, 10), "overdue mail, reminder of the hourly invoice"),
        (at(2026, 2, 10, 10), "suspension"),
        (at(2026, 2, 15, 8, 30), "renewal paid from credit, suspension of the hourly server"),
        (at(2026, 2, 18, 10), "termination warning"),
        (at(2026, 2, 21, 10), "termination"),
        (at(2026, 2, 28, 10), "termination of the hourly server"),
        (at(2026, 3, 1), "hourly usage of February up to the termination"),
        (at(2026, 3, 15, 8, 30), "renewal"),
    ]
    for moment, step in steps:
        before = state()
        billing_run(moment)
        once = state()
        assert once != before, f"{step}: the first run did nothing"
        billing_run(moment)
        assert state() == once, f"{step}: the second run at the same moment changed something"
        for user in (debtor, payer, hourly):
            check_books(user)
        # The worker carries out what billing asked for; a run at the same moment still asks nothing more.
        worker_finishes("suspend", status="suspended", suspended_by="billing", power_state="shutoff")
        worker_finishes("delete", status="deleted", power_state="")
        finished, sent = state(), len(dispatched)
        billing_run(moment)
        assert state() == finished and len(dispatched) == sent, f"{step}: asked again after the worker"

    for user in (debtor, hourly):
        assert Server.objects.get(pk=servers[user].pk).status == "deleted"
        kinds = sorted(Operation.objects.filter(server=servers[user]).values_list("type", flat=True))
        assert kinds == ["delete", "suspend"]
        assert Subscription.objects.get(reference=str(servers[user].id)).status == "ended"
    assert not Operation.objects.filter(server=servers[payer]).exists()
    assert Invoice.objects.filter(account=debtor).count() == 1
    assert list(Invoice.objects.filter(account=payer).values_list("status", flat=True)) == ["paid"] * 3
    assert Invoice.objects.filter(account=hourly).count() == 2
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 7)]
    assert billing_run(at(2026, 3, 15, 8, 30)).endswith(
        "renewed 0, hourly 0, reminded 0, overdue 0, suspended 0, warned 0, terminated 0\n"
    )


def billed_periods() -> list[tuple]:
    return sorted(
        InvoiceLine.objects.values_list(
            "subscription__reference", "kind", "period_start", "period_end", "quantity", "amount"
        )
    )


def pairs(moments: list) -> list[tuple]:
    return list(zip(moments, moments[1:], strict=False))


@pytest.mark.django_db
def test_many_runs_in_order_bill_the_same_periods_as_one_run_at_the_end(catalog):
    plan = factories.make_plan("basic", price_monthly=Decimal("150000"), price_hourly=Decimal("250"))
    customer = factories.make_user(password=None)
    payments.record_payment(customer, Decimal("100000000"), "BANK-PREPAID", at=at(2026, 1, 1))
    subscriptions.open_subscription(customer, plan, "the-31st", "a31", at=at(2026, 1, 31, 10))
    subscriptions.open_subscription(customer, plan, "late-evening", "b15", at=at(2026, 3, 15, 23, 30))
    subscriptions.open_subscription(
        customer, plan, "hourly", "h01", cycle="hourly", at=at(2026, 4, 10, 9, 20)
    )
    end = at(2026, 12, 31, 23)
    upfront = billed_periods()

    with transaction.atomic():
        moment = at(2026, 1, 31, 10)
        while moment <= end:  # every day at 10:00, the anniversaries of the 31st to the minute
            billing_run(moment)
            moment += timedelta(days=1)
        billing_run(end)
        stepwise = billed_periods()
        transaction.set_rollback(True)

    assert billed_periods() == upfront
    billing_run(end)
    once = billed_periods()
    assert stepwise == once
    assert len(once) == len(set(once)), "a period was billed twice"
    check_books(customer)

    def monthly(reference: str) -> list[tuple]:
        return [(start, finish) for ref, kind, start, finish, _, _ in once if ref == reference]

    anniversaries = [at(2026, 1, 31, 10)] + [
        at(2026, month, day, 10)
        for month, day in [(2, 28), (3, 31), (4, 30), (5, 31), (6, 30), (7, 31), (8, 31), (9, 30), (10, 31)]
        + [(11, 30), (12, 31)]
    ]
    assert monthly("the-31st") == pairs([*anniversaries, at(2027, 1, 31, 10)])
    fifteenth = [at(2026, month, 15, 23, 30) for month in range(3, 13)]
    assert monthly("late-evening") == pairs([*fifteenth, at(2027, 1, 15, 23, 30)])
    hourly = [
        (start, finish, quantity, amount)
        for ref, _, start, finish, quantity, amount in once
        if ref == "hourly"
    ]
    # April: 20 days 14 h 40 min -> 495 h of 250; May to November: a month each, capped at 150000.
    assert hourly[0] == (at(2026, 4, 10, 9, 20), at(2026, 5, 1), Decimal(495), Decimal(495 * 250))
    months = [at(2026, month, 1) for month in range(5, 13)]
    assert [(start, finish) for start, finish, _, _ in hourly[1:]] == pairs(months)
    assert {(quantity, amount) for _, _, quantity, amount in hourly[1:]} == {(Decimal(1), Decimal(150000))}


@pytest.mark.django_db
def test_a_moment_without_a_zone_is_the_installations_local_time(catalog):
    plan = factories.make_plan("basic", price_monthly=Decimal("150000"), price_hourly=Decimal("250"))
    customer = factories.make_user(password=None)
    payments.record_payment(customer, Decimal("1000000"), "BANK-LOCAL", at=at(2026, 1, 31, 9))
    subscriptions.open_subscription(customer, plan, "local", "l1", at=at(2026, 1, 31, 10))
    # 28 February 09:30 in Jakarta is before the anniversary; 10:00 is it (03:00 UTC).
    assert "renewed 0" in billing_run_naive("2026-02-28T09:30:00")
    assert "renewed 1" in billing_run_naive("2026-02-28T10:00:00")
    assert "renewed 0" in billing_run_naive("2026-02-28T03:00:00+00:00")
    with pytest.raises(CommandError):
        call_command("billing_run", at="the end of February", stdout=io.StringIO())


def billing_run_naive(iso: str) -> str:
    out = io.StringIO()
    call_command("billing_run", at=iso, stdout=out)
    return out.getvalue()
