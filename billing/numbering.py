"""Document numbers without gaps: invoices (INV-2026-000001) and credit notes (CN-2026-000001), each
numbered per year from a sequence row that stays locked until the taking transaction ends."""

from __future__ import annotations

from django.db import connection
from django.db.models import Model

import prepared_statements


def on_year_row(sequence: type[Model], year: int, sql: str, params) -> tuple:
    """Run `sql`, a statement that updates the year's row of `sequence` and returns a row, making the year's
    row first when it has none yet (the statement then returned nothing). The row stays locked to the
    caller's commit."""
    with connection.cursor() as cursor:
        for _attempt in range(2):
            prepared_statements.execute(cursor, sql, params)
            row = cursor.fetchone()
            if row is not None:
                return row
            sequence.objects.get_or_create(year=year)  # the year's first number
    raise RuntimeError(f"no {sequence.__name__} row for {year}")  # pragma: no cover (get_or_create made it)


def take(sequence: type[Model], prefix: str, year: int, count: int = 1) -> list[str]:
    """The next `count` numbers of the year from `sequence` (a model with `year` and `last`), in one
    statement; the row stays locked to the caller's commit, so numbers never repeat or skip."""
    table = sequence._meta.db_table
    sql = f"UPDATE {table} SET last = last + %s WHERE year = %s RETURNING last"  # noqa: S608
    last = on_year_row(sequence, year, sql, [count, year])[0]
    return [f"{prefix}-{year}-{n:06d}" for n in range(last - count + 1, last + 1)]
