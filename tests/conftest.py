"""Fixtures for the whole suite: real Postgres (pytest-django), real Redis, a real Celery worker."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from panel.celery import app as celery_app
from panel.models import User

from . import factories


@pytest.fixture
def customer(db) -> User:
    return factories.make_user(User.Role.CUSTOMER)


@pytest.fixture
def other_customer(db) -> User:
    return factories.make_user(User.Role.CUSTOMER)


@pytest.fixture
def staff(db) -> User:
    return factories.make_user(User.Role.STAFF)


@pytest.fixture
def admin_user(db) -> User:
    return factories.make_user(User.Role.ADMIN)


def api_client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user)}")
    return client


@pytest.fixture
def api() -> Callable[[User | None], APIClient]:
    """api(user) gives an API client that sends that user's bearer token."""
    return api_client_for


@pytest.fixture
def catalog(db):
    """A region with a ready simulated host, a small plan and an image."""
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)
    return {"region": region, "plan": plan, "image": image, "host": host}


@pytest.fixture
def purge_queue():
    """Drop messages earlier tests left in the test broker."""
    celery_app.control.purge()
    yield
    celery_app.control.purge()


@pytest.fixture
def celery_worker(transactional_db, purge_queue):
    """A real Celery worker consuming from the Redis broker in a thread of this process (so that it shares
    the simulated test:/// hosts with the test)."""
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connections

    def close_connections(**kwargs) -> None:
        # Workers keep their connection between tasks; this one's thread must not keep the test database
        # busy after the test (it could not be dropped at the end of the run).
        connections.close_all()

    task_postrun.connect(close_connections, weak=False)
    with start_worker(
        celery_app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as worker:
        try:
            yield worker
        finally:
            task_postrun.disconnect(close_connections)


def wait_for(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.1, message: str = ""):
    """Poll until predicate() is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout} s")


@pytest.fixture(autouse=True)
def _force_login_includes_the_second_factor(monkeypatch):
    """`client.force_login(user)` gives a session that has shown the second factor when the user has a
    confirmed TOTP device (staff and admins from the factories), as the two-step login would."""
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    original = Client.force_login

    def force_login(self, user, backend=None):
        original(self, user, backend)
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        if device is not None:
            session = self.session
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            session.save()

    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture(autouse=True)
def _static_files_without_manifest(settings):
    """Production serves collected, hashed static files; tests render templates without collecting."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True


def pytest_configure(config):
    from django.conf import settings

    # WhiteNoise warns at start-up when the collected-static directory does not exist yet.
    os.makedirs(settings.STATIC_ROOT, exist_ok=True)


@pytest.fixture(scope="session")
def guest_image():
    """A small real bootable Debian guest (built with debootstrap on first use, then cached)."""
    from .guest_image import build_test_image

    return build_test_image()


@pytest.fixture(autouse=True)
def _each_test_starts_in_the_default_language():
    """A request leaves its language (the browser's, or the account's) active in the thread, as Django's
    LocaleMiddleware does: every test starts and ends in LANGUAGE_CODE, whatever the one before asked."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Accounts made and logged into by tests hash their passwords with a fast hasher (Django's advice for
    test suites): PBKDF2 at its production strength costs a quarter of a second a password, and tests make
    thousands. Nothing here tests the hash's strength; the production setting is PBKDF2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counts live in the shared Redis cache: each test starts with none (issue 11)."""
    from panel.accounts import throttling

    throttling.reset()


class BillingQueue:
    """What billing sent its workers (billing.queue) during a test: task names and arguments, kept instead
    of going to the broker, run in the test's process by `run()` (the worker's job, done when a test
    looks for its effect: an invoice's mail with its PDF)."""

    def __init__(self):
        self.sent: list[tuple[str, tuple]] = []

    def record(self, task_name: str, *args) -> None:
        self.sent.append((task_name, args))

    def run(self) -> list:
        import billing.tasks  # noqa: F401 (registers billing's tasks, as a worker's autodiscovery does)

        results = []
        while self.sent:
            name, args = self.sent.pop(0)
            results.append(celery_app.tasks[name].apply(args=list(args), throw=True).get())
        return results


@pytest.fixture(autouse=True)
def billing_queue(monkeypatch) -> BillingQueue:
    """Billing's tasks are kept, not sent (tests that want them done call `billing_queue.run()`)."""
    from billing import queue

    kept = BillingQueue()
    kept.real_send = queue.send
    monkeypatch.setattr(queue, "send", kept.record)
    return kept


@pytest.fixture
def billing_tasks_to_the_broker(billing_queue, monkeypatch):
    """Billing's tasks go to the broker as in production (for tests with a real worker)."""
    from billing import queue

    monkeypatch.setattr(queue, "send", billing_queue.real_send)
