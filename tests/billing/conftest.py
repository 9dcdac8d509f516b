"""Fixtures for tests of paying through Midtrans and Xendit, against local servers that speak their
documented APIs (tests/payment_provider_server.py; its docstring lists the test controls).

`midtrans` and `xendit` start a MidtransServer / XenditServer and point the panel's settings at it
(MIDTRANS_SERVER_KEY, MIDTRANS_SNAP_URL, MIDTRANS_API_URL; XENDIT_SECRET_KEY, XENDIT_CALLBACK_TOKEN,
XENDIT_API_URL), so billing.providers talks to it over real HTTP. Their notifications go to
`/billing/webhooks/<name>/`:

- by default through Django's test Client, in the calling thread: plain `db` tests see the webhook's
  effect at once, e.g. `midtrans.pay(checkout.reference)` credits the balance before it returns;
- browser and end-to-end tests with pytest-django's `live_server` call `midtrans.deliver_to(
  live_server.url)` first: notifications are then real HTTP POSTs to the live server, and the hosted
  payment page (`checkout.checkout_url`, with its Pay button) sends the customer back to the
  checkout's return URL on that server.

Notifications sent from the hosted page's button run in the server's own thread: with the test Client,
a test that presses it over HTTP needs `transactional_db` (the rows must be committed to be seen).

From other test directories: `from tests.billing.conftest import midtrans, xendit  # noqa: F401`.
Each fixture fails the test at teardown if anything failed inside its server (`server.errors`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.db import connections
from django.test import Client

from billing import checkouts
from tests.payment_provider_server import MidtransServer, ProviderServer, XenditServer

TEST_SERVER = "http://testserver"


def through_test_client(url: str, headers: dict[str, str], body: bytes) -> int:
    """Deliver a notification to the panel through Django's test Client (no network)."""
    extra = {name: value for name, value in headers.items() if name.lower() != "content-type"}
    try:
        response = Client().post(
            urlsplit(url).path,
            data=body,
            content_type=headers.get("Content-Type", "application/json"),
            headers=extra,
        )
    finally:
        if threading.current_thread() is not threading.main_thread():
            # Sent from the server's own thread (the hosted page's button): its connection must not
            # outlive the request, or the test database could not be dropped at the end of the run.
            connections.close_all()
    return response.status_code


@contextmanager
def running(server: ProviderServer) -> Iterator[ProviderServer]:
    """Run the server, its notifications delivered through the test Client, and check that nothing
    failed inside it."""
    server.webhook_url = f"{TEST_SERVER}/billing/webhooks/{server.name}/"
    server.deliver = through_test_client
    with server:
        yield server
    assert not server.errors, "the provider's stand-in failed:\n" + "\n".join(server.errors)


@pytest.fixture
def midtrans(settings) -> Iterator[MidtransServer]:
    """A local Midtrans (Snap and the Core API's status) the panel is configured to use."""
    server = MidtransServer()
    with running(server):
        settings.MIDTRANS_SERVER_KEY = server.key
        settings.MIDTRANS_IS_PRODUCTION = False
        settings.MIDTRANS_SNAP_URL = server.url
        settings.MIDTRANS_API_URL = server.url
        yield server


@pytest.fixture
def xendit(settings) -> Iterator[XenditServer]:
    """A local Xendit (the Invoices API) the panel is configured to use."""
    server = XenditServer()
    with running(server):
        settings.XENDIT_SECRET_KEY = server.key
        settings.XENDIT_CALLBACK_TOKEN = server.callback_token
        settings.XENDIT_API_URL = server.url
        yield server


def return_url(checkout) -> str:
    """Where the provider sends the customer back (any page of ours will do for these tests)."""
    return f"{TEST_SERVER}/billing/?checkout={checkout.reference}"


@pytest.fixture
def top_up():
    """top_up(account, provider, amount) starts a top-up checkout at the provider (billing.checkouts)."""

    def start(account, provider: str, amount: str | Decimal = "150000"):
        return checkouts.start(account, provider, amount=Decimal(amount), return_url=return_url)

    return start
