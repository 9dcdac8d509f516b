"""Schemathesis fuzzes every operation of the API schema (/api/v1/schema/), with a customer's token and with
an admin's, against the panel in this process (WSGI) on the real Postgres and Redis: no request gets a 5xx.

Bounded: a fixed seed, deterministic generation, at most MAX_EXAMPLES generated cases per operation and
phase, no shrinking; well under a minute per role.

Nothing leaves this process. Requests go through the WSGI application, never a socket. The fuzzer may
register hosts with any URI (`POST admin/hosts/`), but registering only records the host: the probe
(ssh-keyscan, a libvirt connection) runs in a Celery task, and no worker runs here; the probe messages
sent to this test run's Redis broker are purged before and after (`purge_queue`). The same holds for the
operations that orders and actions enqueue. Mail goes to Django's in-memory test outbox.
"""

from __future__ import annotations

import traceback

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from billing.models import Invoice
from panel.models import ApiToken, Operation, Server, SSHKey, User
from panel.servers import actions
from tests import factories

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

SEED = 110011
MAX_EXAMPLES = 10

CONFIG = f"""
seed = {SEED}

[generation]
mode = "all"
max-examples = {MAX_EXAMPLES}
deterministic = true
no-shrink = true

[phases.examples]
enabled = true
[phases.coverage]
enabled = false
[phases.fuzzing]
enabled = true
[phases.stateful]
enabled = false
"""


class World:
    """The token's user with a server (and its create operation), an SSH key, an invoice, a spare token
    for `tokens/{id}/`, and a customer and a host for the admin paths."""

    def __init__(self, user: User, catalog: dict):
        factories.make_pool(catalog["region"], cidr="198.51.100.0/24")
        self.user = user
        self.customer = factories.make_user(User.Role.CUSTOMER)
        self.host = catalog["host"]
        self.key = factories.make_ssh_key(user)
        self.server = actions.order_server(
            user,
            name="fuzz1",
            plan=catalog["plan"],
            image=catalog["image"],
            region=catalog["region"],
            ssh_keys=[self.key],
        )
        self.action = Operation.objects.filter(server=self.server).latest("created_at")
        self.invoice = Invoice.objects.filter(account=user).latest("pk")
        self.token = factories.make_token(user)
        self.spare_token, _raw = ApiToken.issue(user, "spare")

    def restore(self) -> None:
        """Undo what earlier cases did to the objects the paths name, so that every case reaches them: the
        server idle and running (no worker finishes its actions here), the key and spare token present."""
        Server.objects.filter(pk=self.server.pk).update(status=Server.Status.RUNNING, task=None)
        if not SSHKey.objects.filter(pk=self.key.pk).exists():
            self.key = factories.make_ssh_key(self.user, name=f"laptop{self.key.pk}")
        if not ApiToken.objects.filter(pk=self.spare_token.pk).exists():
            self.spare_token, _raw = ApiToken.issue(self.user, "spare")

    def path_parameters(self, path: str) -> dict[str, object]:
        """Real ids for the path's parameters (random ones would only ever meet 404)."""
        prefixes = {
            "/api/v1/admin/customers/{id}/": self.customer.pk,
            "/api/v1/admin/hosts/{id}/": self.host.pk,
            "/api/v1/invoices/{id}/": self.invoice.pk,
            "/api/v1/servers/{id}/": self.server.pk,
            "/api/v1/ssh-keys/{id}/": self.key.pk,
            "/api/v1/tokens/{id}/": self.spare_token.pk,
        }
        values = {"id": str(value) for prefix, value in prefixes.items() if path.startswith(prefix)}  # noqa: B035
        if "{action_id}" in path:
            values["action_id"] = str(self.action.pk)
        return values


def load_schema():
    config = SchemathesisConfig.from_str(CONFIG)
    return schemathesis.openapi.from_wsgi("/api/v1/schema/", WSGIHandler(), config=config)


FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)


def api_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


class ServerErrors:
    """The 5xx answers of a run, each with the request and the server's traceback."""

    def __init__(self):
        self.found: dict[tuple[str, str], list[str]] = {}
        self.succeeded: set[tuple[str, str]] = set()  # operations that answered 2xx at least once
        self._tracebacks: list[str] = []

    def on_exception(self, sender, request=None, **kwargs) -> None:
        self._tracebacks.append(traceback.format_exc())

    def check(self, operation, case, response) -> None:
        tracebacks, self._tracebacks = self._tracebacks, []
        if 200 <= response.status_code < 300:
            self.succeeded.add((operation.method.upper(), operation.path))
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (AssertionError, BaseExceptionGroup) as failure:  # schemathesis' FailureGroup: collected
            examples = self.found.setdefault((operation.method.upper(), operation.path), [])
            if len(examples) < 3:
                examples.append(
                    f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r}\n"
                    f"-> {response.status_code} {response.text[:300]}\n{failure}\n" + "".join(tracebacks[-1:])
                )

    def report(self) -> str:
        return "\n\n".join(
            f"== {method} {path}\n" + "\n".join(examples) for (method, path), examples in self.found.items()
        )


def fuzz_operation(operation, world: World, errors: ServerErrors, mode: GenerationMode) -> None:
    strategy = operation.as_strategy(
        generation_mode=mode, path_parameters=world.path_parameters(operation.path)
    )

    @FUZZ_SETTINGS
    @hypothesis.seed(SEED)
    @hypothesis.given(case=strategy)
    def run(case) -> None:
        world.restore()
        case.path_parameters = {**(case.path_parameters or {}), **world.path_parameters(case.path)}
        response = case.call(headers={"Authorization": f"Bearer {world.token}"})
        errors.check(operation, case, response)

    run()


@pytest.mark.parametrize("role", [User.Role.CUSTOMER, User.Role.ADMIN])
def test_no_request_gets_a_server_error(role, catalog, purge_queue, settings):
    settings.API_RATE = "none"  # the per-token limit would answer 429 long before the run ends
    world = World(factories.make_user(role), catalog)
    # The token really reaches its scope (a token refused everywhere would make the run meaningless).
    client = api_client(world.token)
    assert client.get("/api/v1/account/").status_code == 200
    assert client.get("/api/v1/admin/hosts/").status_code == (200 if role == User.Role.ADMIN else 403)

    schema = load_schema()
    errors = ServerErrors()
    got_request_exception.connect(errors.on_exception)
    operations = 0
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_operation(operation, world, errors, mode)
    finally:
        got_request_exception.disconnect(errors.on_exception)
    assert operations >= 30  # the whole API, not a schema that failed to load
    assert not errors.found, errors.report()
    # The cases reached the panel's logic, authenticated, with real ids (not only 400/401/404).
    assert len(errors.succeeded) >= operations // 2, sorted(errors.succeeded)
