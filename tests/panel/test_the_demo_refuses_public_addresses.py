"""`make run` (scripts/run_demo.py) binds the demo panel, with its well-known logins, to loopback addresses
only, unless DEMO_ALLOW_PUBLIC=1 says otherwise."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run_demo.py"


def load_run_demo():
    spec = importlib.util.spec_from_file_location("run_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "192.0.2.10", "10.0.0.5", "panel.example.com", ""])
def test_non_loopback_addresses_are_refused(host):
    reason = load_run_demo().refusal(host, {})
    assert reason is not None
    assert "DEMO_ALLOW_PUBLIC=1" in reason


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses_are_allowed(host):
    assert load_run_demo().refusal(host, {}) is None


def test_an_explicit_opt_in_allows_a_public_address():
    run_demo = load_run_demo()
    assert run_demo.refusal("0.0.0.0", {"DEMO_ALLOW_PUBLIC": "1"}) is None
    assert run_demo.refusal("0.0.0.0", {"DEMO_ALLOW_PUBLIC": "0"}) is not None


def test_make_run_with_a_public_host_exits_before_starting_anything(tmp_path):
    data_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("DEMO_ALLOW_PUBLIC", "DATABASE_URL", "REDIS_URL")}
    env.update(HOST="0.0.0.0", PORT="8999", PANEL_DATA_DIR=str(data_dir))
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Refusing to start the demo on HOST=0.0.0.0" in result.stderr
    assert not data_dir.exists()  # no migration, no seed, no process ran
