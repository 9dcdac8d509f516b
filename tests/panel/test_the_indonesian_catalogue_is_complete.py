"""Every user-facing string of the panel is translated into Bahasa Indonesia: the committed catalogue has no
empty or fuzzy entry, and extracting the strings from the source afresh finds none it lacks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "locale" / "id" / "LC_MESSAGES" / "django.po"
SOURCES = ("panel", "hypervisor", "billing", "templates", "locale", "manage.py")


def _entries(text: str) -> dict[str, tuple[str, bool]]:
    """msgid → (msgstr, fuzzy) of a .po file (plural forms: the first msgstr)."""
    entries = {}
    for block in text.split("\n\n"):
        fuzzy = "#, fuzzy" in block or re.search(r"^#,.*\bfuzzy\b", block, re.M) is not None
        msgid = re.search(r'^msgid ((?:".*"\n?)+)', block, re.M)
        msgstr = re.search(r'^msgstr(?:\[0\])? ((?:".*"\n?)+)', block, re.M)
        if not msgid or not msgstr:
            continue
        key = "".join(re.findall(r'"(.*)"', msgid.group(1)))
        if key:
            entries[key] = ("".join(re.findall(r'"(.*)"', msgstr.group(1))), fuzzy)
    return entries


def test_no_entry_is_empty_or_fuzzy():
    entries = _entries(CATALOGUE.read_text())
    assert entries
    assert [key for key, (text, _fuzzy) in entries.items() if not text] == []
    assert [key for key, (_text, fuzzy) in entries.items() if fuzzy] == []


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="gettext tools are not installed")
def test_every_string_in_the_source_is_in_the_catalogue(tmp_path):
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "id", "-v", "0"],
        cwd=tmp_path,
        check=True,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "PYTHONPATH": str(tmp_path)},
    )
    fresh = _entries((tmp_path / "locale" / "id" / "LC_MESSAGES" / "django.po").read_text())
    missing = [key for key, (text, fuzzy) in fresh.items() if not text or fuzzy]
    assert missing == [], "run makemessages and translate these"
