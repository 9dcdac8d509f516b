"""`manage.py check --deploy` passes with the production environment documented in docs/deployment.md, and
that environment really redirects to HTTPS, sends HSTS and marks cookies secure."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def documented_environment() -> dict[str, str]:
    """The `env` block of docs/deployment.md, with real values for its <placeholders>."""
    block = re.search(r"```env\n(.*?)```", DEPLOYMENT_DOC.read_text(), re.S)
    assert block, "docs/deployment.md has no ```env block"
    environment = {}
    for line in block.group(1).splitlines():
        name, _, value = line.partition("=")
        if value.startswith("<"):
            value = secrets.token_urlsafe(50)
        environment[name] = value
    return environment


def run_python(args: list[str], environment: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess:
    """Run Python in a clean environment: nothing of the test run's (DEBUG, DEMO, the test database) leaks
    in, only what a production server would have."""
    env = {"PATH": os.environ.get("PATH", ""), "PANEL_DATA_DIR": str(data_dir), **environment}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def check_deploy(environment: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess:
    return run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], environment, data_dir)


def test_the_documented_production_environment_passes_check_deploy(tmp_path):
    result = check_deploy(documented_environment(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        ({"HTTPS": "0"}, "security.W004"),
        ({"HTTPS": "0"}, "security.W008"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SECURE_HSTS_INCLUDE_SUBDOMAINS": None}, "security.W005"),
        ({"SECURE_HSTS_PRELOAD": None}, "security.W021"),
        ({"SECURE_COOKIES": "0"}, "security.W012"),
        ({"SECRET_KEY": "short-key"}, "security.W009"),
    ],
)
def test_leaving_a_protection_out_warns(tmp_path, change, warning):
    environment = documented_environment()
    for name, value in change.items():
        if value is None:
            environment.pop(name)
        else:
            environment[name] = value
    result = check_deploy(environment, tmp_path)
    assert result.returncode != 0
    assert warning in result.stderr


# Requests through the Django test client inside a production-configured process (no database needed: the
# login page of an anonymous visitor touches none). Only the static files are served uncollected, as in
# tests/conftest.py.
PROBE = """
import json, django
from django.conf import settings
django.setup()
settings.STORAGES = {**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
from django.test import Client
client = Client(HTTP_HOST="panel.example.com")
plain = client.get("/accounts/login/")
proxied = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security")],
    "csrf_cookie": {flag: bool(cookie[flag]) for cookie in [proxied.cookies.get("csrftoken")] if cookie
                    for flag in ("secure", "httponly")},
    "headers": {name: proxied.get(name) for name in (
        "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy")},
}))
"""


def probe(environment: dict[str, str], data_dir: Path) -> dict:
    environment = {"DJANGO_SETTINGS_MODULE": "panel.settings", **environment}
    result = run_python(["-c", PROBE], environment, data_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_documented_environment_redirects_to_https_and_sends_hsts(tmp_path):
    seen = probe(documented_environment(), tmp_path)
    assert seen["plain"] == [301, "https://panel.example.com/accounts/login/"]
    assert seen["proxied"] == [200, "max-age=31536000; includeSubDomains; preload"]
    assert seen["csrf_cookie"] == {"secure": True, "httponly": True}
    assert seen["headers"] == {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def test_production_mode_is_secure_without_being_told(tmp_path):
    """Without DEBUG, DEMO or HTTPS the panel redirects to HTTPS, sends HSTS and marks cookies secure."""
    environment = documented_environment()
    for name in ("HTTPS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD"):
        environment.pop(name)
    seen = probe(environment, tmp_path)
    assert seen["plain"] == [301, "https://panel.example.com/accounts/login/"]
    assert seen["proxied"] == [200, "max-age=31536000"]
    assert seen["csrf_cookie"] == {"secure": True, "httponly": True}


def test_with_https_off_the_panel_answers_plain_http_without_hsts(tmp_path):
    """HTTPS=0, for a panel on a private network (and the test suite): no redirect, no HSTS, no secure
    cookies."""
    environment = documented_environment()
    environment.pop("SECURE_PROXY_SSL_HEADER")
    environment["HTTPS"] = "0"
    seen = probe(environment, tmp_path)
    assert seen["plain"] == [200, None]
    assert seen["proxied"] == [200, None]
    assert seen["csrf_cookie"] == {"secure": False, "httponly": True}


def test_the_forwarded_proto_header_is_ignored_unless_opted_in(tmp_path):
    """Without SECURE_PROXY_SSL_HEADER a client cannot claim HTTPS: the redirect still happens."""
    environment = documented_environment()
    environment.pop("SECURE_PROXY_SSL_HEADER")
    seen = probe(environment, tmp_path)
    assert seen["proxied"][0] == 301
