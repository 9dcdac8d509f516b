"""`make run`: the demo panel with embedded defaults (SQLite, a filesystem broker), a web server, one
Celery worker, beat, the libvirt event listener (`manage.py listen_events`: a guest that shuts itself
down shows as stopped within seconds) and the console proxy (`manage.py console_proxy`, on PORT + 1).
Prints the URL and the demo logins; Ctrl-C stops everything."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def is_loopback(host: str) -> bool:
    """Whether HOST names a loopback address: `localhost`, 127.0.0.0/8 or ::1 (with or without brackets).
    Other host names count as public: what they resolve to may change."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def refusal(host: str, env: dict[str, str]) -> str | None:
    """Why the demo must not bind HOST, or None. The demo has well-known logins, debug pages and an
    insecure secret key, so it listens on the loopback address only unless DEMO_ALLOW_PUBLIC=1 says
    otherwise."""
    if is_loopback(host) or env.get("DEMO_ALLOW_PUBLIC", "").strip().lower() in {"1", "true", "yes", "on"}:
        return None
    return (
        f"Refusing to start the demo on HOST={host}: it is not a loopback address, and the demo panel has "
        "well-known logins, debug pages and an insecure secret key. Use HOST=127.0.0.1 (the default), or set "
        "DEMO_ALLOW_PUBLIC=1 if you really mean to expose it (see docs/deployment.md for production)."
    )


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DEMO", "1")
    env.setdefault("DEBUG", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
    console_bind = env.setdefault("CONSOLE_BIND", f"{host}:{int(port) + 1}")
    reason = refusal(host, env)
    if reason:
        print(reason, file=sys.stderr)
        return 2
    if not is_loopback(host):
        print(f"Warning: the demo panel listens on {host}, reachable from other machines.", file=sys.stderr)
    data_dir = Path(env.setdefault("PANEL_DATA_DIR", str(ROOT / "var")))
    data_dir.mkdir(parents=True, exist_ok=True)
    manage = [sys.executable, str(ROOT / "manage.py")]

    subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, cwd=ROOT, check=True)
    seed = subprocess.run(
        [*manage, "seed_demo"], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )

    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    commands = {
        "web": [
            str(BIN / "gunicorn"),
            "-c",
            "python:panel.gunicorn_conf",  # sized from the CPU count, as in the Dockerfile
            "panel.wsgi",
            "--bind",
            f"{host}:{port}",
            "--access-logfile",
            "-",
        ],
        # One worker process: the simulated test:/// host lives inside it (threads share it).
        "worker": [
            str(BIN / "celery"),
            "-A",
            "panel",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            "--loglevel",
            "INFO",
        ],
        "beat": [
            str(BIN / "celery"),
            "-A",
            "panel",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(data_dir / "celerybeat-schedule"),
        ],
        # Lifecycle events of the hosts' domains, applied to servers at once (a simulated test:/// host
        # lives inside the worker, so the listener leaves it to the periodic reconcile).
        "events": [*manage, "listen_events"],
        # The browser consoles' websockets (the simulated host's domains have no console to reach; servers
        # on a real host added with `manage.py add_host` do).
        "console": [*manage, "console_proxy", "--bind", console_bind],
    }
    processes = {}
    for name, command in commands.items():
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child's life
        processes[name] = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    print(seed.stdout.rstrip())
    print(f"\nThe panel is at http://{host}:{port}/  (API docs: http://{host}:{port}/api/v1/docs/)")
    print(f"Logs: {logs}/web.log, worker.log, beat.log, events.log, console.log. Press Ctrl-C to stop.\n")

    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                print(
                    f"The {name} process exited with {process.returncode}; see {logs}/{name}.log",
                    file=sys.stderr,
                )
                stopping, exit_code = True, 1
        time.sleep(0.5)

    print("Stopping…")
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
