"""Which queue work on a host goes to. With REGION_QUEUES set, each region has its own queue
("<CELERY_QUEUE>.<region slug>") served by a worker group near its hosts; otherwise everything goes to the
default queue (None: Celery's default routing)."""

from __future__ import annotations

import threading
import time

from django.conf import settings

from .models import Region

SLUG_TTL = 60.0  # seconds a process keeps a region's slug (a renamed region's work moves within a minute)
_slugs: dict[int, tuple[str, float]] = {}
_lock = threading.Lock()


def _slug(region_id: int) -> str:
    now = time.monotonic()
    with _lock:
        slug, read_at = _slugs.get(region_id, ("", now - SLUG_TTL))
    if now - read_at >= SLUG_TTL:
        slug = Region.objects.filter(pk=region_id).values_list("slug", flat=True).first() or ""
        with _lock:
            _slugs[region_id] = (slug, now)
    return slug


def queue_for_region(region_id: int | None) -> str | None:
    """The queue for work in the region, or None for the default queue."""
    if not settings.REGION_QUEUES or region_id is None:
        return None
    slug = _slug(region_id)
    return f"{settings.CELERY_TASK_DEFAULT_QUEUE}.{slug}" if slug else None


def queue_for_host(host) -> str | None:
    """The queue for work on the host (a Host, or anything with a region_id)."""
    return queue_for_region(host.region_id)
