"""Document numbers without gaps: invoices (INV-2026-000001) and credit notes (CN-2026-000001), each
numbered per year from a sequence row that stays locked until the taking transaction ends."""

from __future__ import annotations

from django.db import connection
from django.db.models import Model


def take(sequence: type[Model], prefix: str, year: int, count: int = 1) -> list[str]:
    """The next `count` numbers of the year from `sequence` (a model with `year` and `last`), in one
    statement; the row stays locked to the caller's commit, so numbers never repeat or skip."""
    table = sequence._meta.db_table
    with connection.cursor() as cursor:
        for _attempt in range(2):
            cursor.execute(
                f"UPDATE {table} SET last = last + %s WHERE year = %s RETURNING last",  # noqa: S608
                [count, year],
            )
            row = cursor.fetchone()
            if row is not None:
                break
            sequence.objects.get_or_create(year=year)  # the year's first number
        else:  # pragma: no cover (the row exists after get_or_create)
            raise RuntimeError(f"no {prefix} sequence for {year}")
    last = row[0]
    return [f"{prefix}-{year}-{n:06d}" for n in range(last - count + 1, last + 1)]
