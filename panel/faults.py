"""Pause points for crash tests.

The crash tests kill a worker (SIGKILL) between two steps of an operation. To do that at a known step
rather than by timing, a worker started with PANEL_FAULT_PAUSE_AT=<step> writes a marker file and sleeps
when it reaches that step; the test then kills it. Unset (always, outside those tests) it does nothing.
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
    marker.write_text(f"{step} {os.getpid()}\n")
    time.sleep(3600)
