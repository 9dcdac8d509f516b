import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DEMO")}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def run_check(**env_overrides):
    return run_manage("check", **env_overrides)


def test_production_settings_require_a_secret_key():
    result = run_check()
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_and_demo_run_without_one():
    assert run_check(DEBUG="1").returncode == 0
    assert run_check(DEMO="1").returncode == 0


def test_checking_migrations_needs_no_secret_key_but_serving_does():
    assert run_manage("makemigrations", "--check", "--dry-run").returncode == 0
    assert run_manage("migrate", "--plan").returncode != 0
