"""An order asks Postgres the same number of questions however many hosts, servers and invoices the
installation already has: placement, quota, address, claim and first invoice never read row by row. The
number is pinned, so that a query added to the order path is a decision, not an accident."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import InvoiceSequence
from panel.servers import actions, order_catalogue
from tests import factories

pytestmark = pytest.mark.django_db

# The order's transaction (a savepoint here, inside the test's transaction): the customer's lock with their
# quota and the order's plan, image and region as they are now (one statement); usage; the claim (one
# statement picks, locks and fills the host); both primary addresses (one statement, which also tells
# whether the region has IPv4 and IPv6 pools); the server (its random MAC under a unique constraint, ON
# CONFLICT DO NOTHING: no savepoint); operation; billing profile, subscription, account lock, invoice
# number, the invoice's parties (the seller's profile and the customer's billing details, one query),
# invoice, line, charge, open invoices, balance; the activity log's line; and its end.
ORDER_QUERIES = 19


def _order(customer, catalog, name: str):
    with CaptureQueriesContext(connection) as queries:
        actions.order_server(
            customer, name=name, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
        )
    return [query["sql"] for query in queries.captured_queries]


def test_an_order_asks_the_same_questions_however_big_the_installation(customer, catalog, settings):
    settings.DEFAULT_QUOTA = {"servers": 100}
    InvoiceSequence.objects.get_or_create(year=timezone.localtime().year)  # the year's first invoice makes it
    factories.make_pool(catalog["region"], cidr="198.51.100.0/24")
    _order(customer, catalog, "warm.example.com")  # prepares the hot statements on this connection
    first = _order(customer, catalog, "first.example.com")

    for _ in range(5):  # more hosts in the region
        factories.set_host_size(factories.make_host(region=catalog["region"], probe=False))
    for index in range(10):  # more servers (with allocations, addresses and invoices) for this customer
        _order(customer, catalog, f"web{index}.example.com")
    later = _order(customer, catalog, "later.example.com")

    assert len(later) == len(first), "\n".join(later)
    assert len(later) <= ORDER_QUERIES, "\n".join(later)
    assert not [sql for sql in later if sql.startswith("PREPARE")], "prepared again on the same connection"


def test_an_api_order_asks_only_for_its_token_besides_the_order(
    api, customer, catalog, settings, monkeypatch
):
    """Through the API, the request adds one statement (the bearer token with its user): the plan, image and
    region are validated against the process's copy of the catalogue, and the order reads them again with
    the customer's lock."""
    monkeypatch.setattr(order_catalogue, "TTL_SECONDS", 3600.0)  # no reload of the copy in between
    settings.DEFAULT_QUOTA = {"servers": 100}
    InvoiceSequence.objects.get_or_create(year=timezone.localtime().year)
    factories.make_pool(catalog["region"], cidr="198.51.100.0/24")
    client = api(customer)
    body = {"plan": catalog["plan"].slug, "image": catalog["image"].slug, "region": catalog["region"].slug}
    assert client.post("/api/v1/servers/", {**body, "name": "warm"}, format="json").status_code == 202

    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/servers/", {**body, "name": "api.example.com"}, format="json")
    assert response.status_code == 202, response.content
    direct = _order(customer, catalog, "direct.example.com")

    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == len(direct) + 1, "\n".join(statements)
