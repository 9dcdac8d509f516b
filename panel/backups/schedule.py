"""Scheduled backups: the beat (`panel.tasks.run_due_backups`, every minute) starts the backup of each
enabled policy whose `next_run_at` has come.

Each policy is claimed in a small transaction of its own: its row is locked without waiting (SKIP LOCKED:
a second beat takes the others), and `next_run_at` moves on to the policy's next slot by a compare-and-swap
on the value it had, so that two beats never both start the same backup. The backup is started after that
commit, outside the policy's lock (starting it locks the server's row, which a policy change locks before
the policy's): at worst a crash between the two misses one slot, never starts two. A server busy with
another action (Conflict) is tried again RETRY_AFTER later, never past its next regular slot.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from panel.backups.policies import next_slot
from panel.models import BackupPolicy, Server
from panel.servers import actions

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(minutes=10)
# Policies claimed per transaction (each is started before the next batch is claimed).
BATCH = 20


def run_due_backups(now: datetime | None = None, limit: int = 200) -> int:
    """Start the backups that are due at `now` (at most `limit` policies looked at); the number started."""
    now = now or timezone.now()
    started = looked_at = 0
    while looked_at < limit:
        claimed = _claim(now, min(BATCH, limit - looked_at))
        if not claimed:
            break
        looked_at += len(claimed)
        for policy in claimed:
            started += _start(policy, now)
    return started


def _claim(now: datetime, count: int) -> list[BackupPolicy]:
    """Up to `count` due policies whose `next_run_at` this call moved on to their next slot (the slot is
    left on each, as `next_run_at`). A policy of a deleted server is turned off instead."""
    claimed = []
    with transaction.atomic():
        due = (
            BackupPolicy.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("server")
            .filter(enabled=True, next_run_at__lte=now)
            .order_by("next_run_at", "pk")[:count]
        )
        for policy in due:
            if policy.server.status == Server.Status.DELETED:
                BackupPolicy.objects.filter(pk=policy.pk).update(enabled=False, next_run_at=None)
                continue
            slot = next_slot(policy, now)
            moved = BackupPolicy.objects.filter(
                pk=policy.pk, enabled=True, next_run_at=policy.next_run_at
            ).update(next_run_at=slot)
            if moved:
                policy.next_run_at = slot
                claimed.append(policy)
    return claimed


def _start(policy: BackupPolicy, now: datetime) -> int:
    """Start the claimed policy's backup (1), or set it to be tried again (0)."""
    try:
        actions.backup_server(policy.server, None, trigger="scheduled")
    except actions.Conflict:
        retry = min(now + RETRY_AFTER, policy.next_run_at)
        BackupPolicy.objects.filter(pk=policy.pk, enabled=True, next_run_at=policy.next_run_at).update(
            next_run_at=retry
        )
        return 0
    except actions.ActionError as exc:
        # Refused for good at this slot (no backup target any more, say): the next slot tries again.
        log.warning("scheduled backup of server %s not started: %s", policy.pk, exc.message)
        return 0
    except Exception:
        log.exception("scheduled backup of server %s could not be started", policy.pk)
        return 0
    return 1
