"""The hot paths' hand-written statements (prepared_statements) are PREPAREd once per database session and
then EXECUTEd, answering what the statement as it is answers: positional and named parameters (a name used
twice is one parameter), each value sent as the type Postgres chose for its parameter (arrays of strings
and of NULLs arrive as declared or as their column's type), a literal percent sign (also before an `s`);
a prepared statement outlives a rolled-back transaction, and one whose PREPARE was interrupted on the way is
looked for before it is prepared again; `any_of` keeps a statement's text the same for any
number of values but one (a plain equality). The module is a leaf the three apps share."""

from __future__ import annotations

import ast
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import prepared_statements
from billing.models import LedgerEntry
from billing.rows import insert_values
from tests import factories

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
POSTGRES = pytest.mark.skipif(connection.vendor != "postgresql", reason="only Postgres prepares")

NAMED = "SELECT %(n)s::bigint + %(n)s::bigint, %(label)s || '100%%s', unnest(%(tags)s::jsonb[])"


def _run(sql: str, params) -> tuple[list, list[str]]:
    with CaptureQueriesContext(connection) as queries, connection.cursor() as cursor:
        prepared_statements.execute(cursor, sql, params)
        rows = cursor.fetchall()
    return rows, [query["sql"] for query in queries.captured_queries]


@POSTGRES
def test_a_statement_is_prepared_once_and_answers_as_the_statement_itself():
    params = {"n": 21, "label": "up to ", "tags": [json.dumps({"a": 1}), None]}
    with connection.cursor() as cursor:
        cursor.execute(NAMED, params)
        expected = cursor.fetchall()

    first, sent = _run(NAMED, params)
    assert [sql.split(" ")[0] for sql in sent] == ["PREPARE", "EXECUTE"]
    again, sent = _run(NAMED, params)
    assert [sql.split(" ")[0] for sql in sent] == ["EXECUTE"]
    assert first == again == expected == [(42, "up to 100%s", '{"a": 1}'), (42, "up to 100%s", None)]


@POSTGRES
def test_arrays_of_nulls_and_strings_arrive_as_the_types_the_statement_declares():
    sql = "SELECT unnest(%s::bigint[]), unnest(%s::varchar[])"
    assert _run(sql, [[None, 7], ["x", None]])[0] == [(None, "x"), (7, None)]
    assert _run(sql, [[], []])[0] == []


@POSTGRES
def test_a_parameter_without_a_cast_arrives_as_the_type_of_its_column(customer, catalog):
    server = factories.make_server(customer, catalog)
    sql = "SELECT id, name FROM panel_server WHERE id = ANY(%s) AND name <> ALL(%s)"  # uuid[], varchar[]
    assert _run(sql, [[str(server.pk), None], ["other", None]])[0] == []  # <> ALL with a NULL: unknown
    assert _run(sql, [[str(server.pk)], ["other"]])[0] == [(server.pk, server.name)]


@POSTGRES
def test_a_prepared_statement_outlives_a_rolled_back_transaction():
    sql = "SELECT %s::int * 2"
    with pytest.raises(RuntimeError), transaction.atomic():
        assert _run(sql, [4])[0] == [(8,)]
        raise RuntimeError("rolled back")
    rows, sent = _run(sql, [5])
    assert rows == [(10,)] and [s.split(" ")[0] for s in sent] == ["EXECUTE"]


class Interrupted(Exception):
    """What a time limit raises in a worker at any line (Celery's SoftTimeLimitExceeded)."""


class InterruptedAfterSending:
    """A cursor whose statements reach Postgres, but whose caller is interrupted before it reads an answer."""

    def __init__(self, cursor):
        self.cursor = cursor

    def execute(self, sql, params=None):
        self.cursor.execute(sql, params)

    def fetchone(self):
        raise Interrupted


class InterruptedBeforeSending(InterruptedAfterSending):
    """A cursor whose caller is interrupted before its statement is sent."""

    def execute(self, sql, params=None):
        raise Interrupted


@POSTGRES
@pytest.mark.parametrize(
    ("interrupted", "sent_next"),
    [
        (InterruptedAfterSending, ["SELECT", "EXECUTE"]),
        (InterruptedBeforeSending, ["SELECT", "PREPARE", "EXECUTE"]),
    ],
)
def test_a_prepare_interrupted_on_the_way_is_found_or_made_at_the_next_use(interrupted, sent_next):
    """An interrupted PREPARE may or may not have been done: the next use on the session looks before
    preparing (preparing a statement that exists fails, and would at every use for the connection's life)."""
    sql = f"SELECT %s::int + 1, %s::text, '{interrupted.__name__}'"  # a statement of its own per case
    with connection.cursor() as cursor, pytest.raises(Interrupted):
        prepared_statements.execute(interrupted(cursor), sql, [1, "a"])

    rows, sent = _run(sql, [41, "b"])
    assert rows == [(42, "b", interrupted.__name__)]
    assert [s.split(" ")[0] for s in sent] == sent_next
    rows, sent = _run(sql, [1, "c"])
    assert rows == [(2, "c", interrupted.__name__)] and [s.split(" ")[0] for s in sent] == ["EXECUTE"]


def test_any_of_keeps_the_text_for_any_number_of_values_but_one(customer, other_customer):
    one, one_params = prepared_statements.any_of([customer.pk])
    assert (one, one_params) == ("= %s", [customer.pk])
    two, two_params = prepared_statements.any_of([customer.pk, other_customer.pk])
    three, three_params = prepared_statements.any_of([customer.pk, other_customer.pk, 0])
    if connection.vendor == "postgresql":
        assert two == three and two_params == [[customer.pk, other_customer.pk]]
        assert three_params == [[customer.pk, other_customer.pk, 0]]
    sql = f"SELECT id FROM panel_user WHERE id {two} ORDER BY id"  # noqa: S608
    assert _run(sql, two_params)[0] == [(customer.pk,), (other_customer.pk,)]


def test_billing_rows_with_json_and_missing_keys_are_written_through_prepared_statements(customer):
    columns = ["account_id", "kind", "amount", "currency", "reason", "reason_data"]
    values = [
        (
            customer.pk,
            LedgerEntry.Kind.ADJUSTMENT,
            Decimal("5.00"),
            "IDR",
            "a",
            {"message": "x", "values": {}},
        ),
        (customer.pk, LedgerEntry.Kind.ADJUSTMENT, Decimal("-2.00"), "IDR", "b", {}),
    ]
    for _ in range(2):  # prepared by the first, executed again by the second
        keys = insert_values(LedgerEntry, columns, values)
        rows = LedgerEntry.objects.filter(pk__in=keys).order_by("pk")
        assert [(row.reason, row.reason_data, row.invoice_id) for row in rows] == [
            ("a", {"message": "x", "values": {}}, None),
            ("b", {}, None),
        ]


def test_the_module_is_a_leaf_that_imports_nothing_of_the_project():
    tree = ast.parse((ROOT / "prepared_statements.py").read_text())
    imported = {
        (node.module or "" if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"panel", "hypervisor", "billing", "bench", "tests"}, imported
