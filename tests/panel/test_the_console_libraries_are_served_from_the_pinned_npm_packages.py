"""noVNC and xterm.js come from npm, pinned exactly in package.json and package-lock.json (`make setup` runs
`npm ci`), and the panel serves them itself through Django's static files (no CDN): the console's modules
are there, every module noVNC's rfb.js imports (relative ES module imports, through core/ and its vendored
pako) resolves to a served file, and none of node_modules' other files (package manifests, READMEs) is
served."""

from __future__ import annotations

import json
import re
from pathlib import Path
from posixpath import dirname, normpath

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)
PACKAGES = ("@novnc/novnc", "@xterm/xterm", "@xterm/addon-fit")
SERVED = [
    "vendor/novnc/core/rfb.js",
    "vendor/xterm/lib/xterm.mjs",
    "vendor/xterm/css/xterm.css",
    "vendor/xterm-addon-fit/lib/addon-fit.mjs",
    "panel/console.js",
    "panel/console.css",
]
IMPORT = re.compile(r"""^\s*(?:import|export)\s[^'"]*?\sfrom\s+["']([^"']+)["']""", re.MULTILINE)


def test_the_packages_are_pinned_exactly_and_locked():
    wanted = json.loads((ROOT / "package.json").read_text())["dependencies"]
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert set(wanted) == set(PACKAGES)
    for name, version in wanted.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned to one version: {version}"
        locked = lock["packages"][f"node_modules/{name}"]
        assert locked["version"] == version and locked["integrity"].startswith("sha512-")
    assert "node_modules/" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("path", SERVED)
def test_the_console_files_are_served(client, path):
    response = client.get(f"/static/{path}")
    assert response.status_code == 200, path
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body
    expected = "text/css" if path.endswith(".css") else "text/javascript"
    assert response["Content-Type"].startswith(expected), (path, response["Content-Type"])


def test_every_module_rfb_imports_is_served():
    seen, pending = set(), ["vendor/novnc/core/rfb.js"]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        found = finders.find(path)
        assert found, f"{path} is imported but not served"
        for target in IMPORT.findall(Path(found).read_text()):
            assert target.startswith("."), f"{path} imports a bare module name: {target}"
            pending.append(normpath(f"{dirname(path)}/{target}"))
    assert "vendor/novnc/vendor/pako/lib/zlib/inflate.js" in seen
    assert len(seen) > 20


def test_nothing_else_from_node_modules_is_served(client):
    for path in (
        "vendor/novnc/package.json",
        "vendor/novnc/AUTHORS",
        "vendor/xterm/package.json",
        "vendor/xterm/README.md",
        "package.json",
    ):
        assert finders.find(path) is None, path
        assert client.get(f"/static/{path}").status_code == 404, path
