"""The panel's date and time formats per language (FORMAT_MODULE_PATH), on top of Django's own.

Dates read "1 Dec 2026" / "1 Des 2026" ("j M Y") in both languages; times "14:05" in English and "14.05" in
Indonesian (its TIME_FORMAT style), also inside DATETIME_FORMAT and SHORT_DATETIME_FORMAT, so that a page
never mixes the two. Templates and Python code name these formats ("DATE_FORMAT", "TIME_FORMAT",
"DATETIME_FORMAT", "SHORT_DATETIME_FORMAT") instead of spelling out "H:i". What is not set here (number
separators, input formats, month names) comes from Django's locale of the language."""
