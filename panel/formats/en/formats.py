"""English: "1 Dec 2026", "14:05", "1 Dec 2026, 14:05" (see panel/formats/__init__.py)."""

DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i"
DATETIME_FORMAT = "j M Y, H:i"
SHORT_DATETIME_FORMAT = "j M Y H:i"
