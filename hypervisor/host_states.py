"""A host's state machine: its vocabularies and the moves between them, in one place.

- `State`: what the panel knows of the host. It is registered `new`; probing it (`hosts.probe_host`, on
  registration or when an admin asks again, whatever its state) makes it `probing`, then `ready` or
  `error`. The health check (`hosts.check_host`) looks only at ready and down hosts: a ready host that
  stops answering goes `down`, a down host that answers again is `ready`. Only a ready host takes servers.
- `DisabledBy`: who disabled the host; only they enable it again. An admin's disabling always wins: the
  health check disables only an enabled host and re-enables only a host it disabled itself.

`TRANSITIONS` lists every state change the panel makes.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["CHECKED", "DisabledBy", "State", "TRANSITIONS", "may_move"]


class State(models.TextChoices):
    NEW = "new", _("New")
    PROBING = "probing", _("Probing")
    READY = "ready", _("Ready")
    ERROR = "error", _("Error")
    DOWN = "down", _("Down")


class DisabledBy(models.TextChoices):
    NOBODY = "", _("Nobody")
    ADMIN = "admin", _("An admin")
    HEALTH = "health", _("The health check")


# The states the health check watches (a new, probing or failed host waits for a probe instead).
CHECKED = (State.READY, State.DOWN)
# The states of a host whose probe has not answered yet (its page reloads until it has).
AWAITING_PROBE = (State.NEW, State.PROBING)

# Every state change: a probe (from any state but probing, which it is in already) and its outcome, and
# the health check's verdicts.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.PROBING}),
    State.PROBING: frozenset({State.READY, State.ERROR}),
    State.READY: frozenset({State.PROBING, State.DOWN}),
    State.ERROR: frozenset({State.PROBING}),
    State.DOWN: frozenset({State.PROBING, State.READY}),
}


def may_move(old: str, new: str) -> bool:
    """Whether the panel ever moves a host from state `old` to `new` (staying put always may)."""
    return old == new or State(new) in TRANSITIONS[State(old)]
