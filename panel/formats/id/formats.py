"""Bahasa Indonesia: "1 Des 2026", "14.05", "1 Des 2026, 14.05" (see panel/formats/__init__.py). Numbers
come from Django's locale: "45.000", "1,5"."""

DATE_FORMAT = "j M Y"
TIME_FORMAT = "H.i"
DATETIME_FORMAT = "j M Y, H.i"
SHORT_DATETIME_FORMAT = "j M Y H.i"
