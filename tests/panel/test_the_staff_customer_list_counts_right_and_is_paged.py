"""The staff customer list shows each account's own server count and balance (no join multiplies them) and
is paged, as is GET admin/customers/."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import payments
from panel.accounts.staff_views import STAFF_CUSTOMERS_PER_PAGE

from .. import factories

pytestmark = pytest.mark.django_db


def test_figures_are_not_multiplied(client, api, staff, customer, catalog):
    for n in range(3):
        factories.make_server(customer, catalog, name=f"web{n}")
    for n in range(4):
        payments.record_payment(customer, Decimal("1000"), f"ref-{n}")
    client.force_login(staff)

    row = next(c for c in client.get("/staff/customers/").context["customers"] if c.pk == customer.pk)

    assert (row.server_count, row.balance_total) == (3, Decimal("4000"))
    listed = {c["id"]: c for c in api(staff).get("/api/v1/admin/customers/").json()["results"]}
    assert listed[customer.pk]["balance"] == "4000"


def test_the_list_is_paged(client, staff):
    for _n in range(STAFF_CUSTOMERS_PER_PAGE + 5):
        factories.make_user()
    client.force_login(staff)

    first = client.get("/staff/customers/")
    second = client.get("/staff/customers/?page=2")

    assert len(first.context["customers"]) == STAFF_CUSTOMERS_PER_PAGE
    assert len(second.context["customers"]) == 6  # five more customers and the staff member
