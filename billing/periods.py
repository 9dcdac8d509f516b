"""Billing's month arithmetic, in one place. A monthly period runs from a day of the month (its anchor) to
the same day of the next month; the 31st becomes the last day of shorter months. Hourly usage is
invoiced by calendar month in the installation's time zone."""

from __future__ import annotations

import calendar
from datetime import datetime

from django.utils import timezone


def add_months(moment: datetime, months: int, anchor_day: int) -> datetime:
    """`moment` moved by `months` months, to `anchor_day` or the month's last day when it is shorter."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(anchor_day, calendar.monthrange(year, month)[1]))


def add_month(moment: datetime, anchor_day: int) -> datetime:
    """The end of the monthly period that starts at `moment` (see add_months)."""
    return add_months(moment, 1, anchor_day)


def month_start(at: datetime) -> datetime:
    """Midnight of the first day of `at`'s month, in the installation's time zone."""
    local = timezone.localtime(at)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
