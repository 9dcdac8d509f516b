from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing import cycle


class Command(BaseCommand):
    help = "Run every periodic billing step as of a moment (default now): invoices, reminders, dunning."

    def add_arguments(self, parser):
        parser.add_argument("--at", help="ISO 8601 moment, e.g. 2026-12-01T00:00:00+07:00")

    def handle(self, *args, at=None, **options):
        moment = timezone.now()
        if at:
            moment = parse_datetime(at)
            if moment is None:
                raise CommandError(f"Not an ISO 8601 date and time: {at}")
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment)
        result = cycle.run(moment)
        self.stdout.write(
            f"Billing run as of {moment.isoformat()}: " + ", ".join(f"{k} {v}" for k, v in result.items())
        )
