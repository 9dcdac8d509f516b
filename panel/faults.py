"""Pause points for crash tests.

The crash tests kill a worker (SIGKILL), or restart a service it talks to, between two steps of an
operation. To do that at a known step rather than by timing, a worker started with
PANEL_FAULT_PAUSE_AT=<step> writes a marker file ("<step> <pid>") when it reaches that step and waits until
a file named like the marker plus ".go" appears (a test that restarts a service lets it go on; one that
kills it never does). Unset (always, outside those tests) it does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.conf import settings


def pause_point(step: str) -> None:
    if not settings.FAULT_PAUSE_AT or settings.FAULT_PAUSE_AT != step:
        return
    marker = Path(os.environ.get("PANEL_FAULT_MARKER", "/tmp/panel-fault-marker"))
    go = marker.with_name(marker.name + ".go")
    marker.write_text(f"{step} {os.getpid()}\n")
    deadline = time.monotonic() + 3600
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
