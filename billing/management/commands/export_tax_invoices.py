"""manage.py export_tax_invoices --from 2026-01-01 --to 2026-01-31 [--output FILE]: the output tax invoices
issued in the period (local dates, both included) as the XML file Coretax imports (billing.tax_export),
written to FILE or to standard output."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from billing import tax_export


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date like 2026-01-31: {text!r}") from None


class Command(BaseCommand):
    help = (
        "Write the output tax invoices (Faktur Pajak Keluaran) issued in a period as the XML file that "
        "Coretax imports."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="start", type=_day, required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", type=_day, required=True, help="last day, YYYY-MM-DD")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args, start: date, end: date, output: str | None = None, **options):
        try:
            result = tax_export.export(start, end)
        except tax_export.ExportRefused as exc:
            raise CommandError(exc.message) from None
        if output:
            try:
                Path(output).write_bytes(result.xml)
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror}") from None
            count = len(result.invoices)
            self.stderr.write(f"{count} tax invoices issued from {start} to {end} written to {output}")
        else:
            self.stdout.write(result.xml.decode(), ending="")
