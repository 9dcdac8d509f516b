"""The plans on sale, the OS images and the open regions an API order names by slug, kept per process for
a few seconds so that validating an order asks Postgres nothing.

The copy is only what the order's request is checked against (an unknown slug is a 400). It is never the
truth an order is made from: `panel.servers.actions.order_server` reads the plan, image and region again
inside its transaction (in the statement that locks the customer), so a plan an admin took off sale, or
changed, a moment ago is refused or sold as it is now, whatever this copy says. A slug the copy does not
know is looked up in Postgres (a plan put on sale a moment ago is found, and the copy is made again), and a
change saved in this process drops the copy at once (other processes' copies expire after TTL_SECONDS).
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field

from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from billing.models import Plan
from hypervisor.models import Image, Region
from panel.servers import catalog

TTL_SECONDS = 10.0


@dataclass(frozen=True)
class _Copy:
    plans: dict[str, Plan]
    images: dict[str, Image]
    regions: dict[str, Region]
    loaded_at: float = field(default_factory=time.monotonic)


_current: _Copy | None = None
_loading = threading.Lock()


def _on_offer() -> dict:
    """What an order may name, by kind."""
    return {
        "plans": Plan.objects.filter(is_active=True),
        "images": catalog.active_images(),
        "regions": catalog.open_regions(),
    }


def _load() -> _Copy:
    return _Copy(**{kind: {row.slug: row for row in rows} for kind, rows in _on_offer().items()})


def _copy() -> _Copy:
    global _current
    current = _current
    if current is None or time.monotonic() - current.loaded_at > TTL_SECONDS:
        with _loading:  # one thread of the process reloads it; the others wait for its copy
            current = _current
            if current is None or time.monotonic() - current.loaded_at > TTL_SECONDS:
                current = _current = _load()
    return current


def forget(**_signal) -> None:
    """Drop this process's copy (a plan, image or region was saved or deleted here)."""
    global _current
    _current = None


def _find(kind: str, slug: object) -> Model | None:
    if not isinstance(slug, str):
        return None
    found = getattr(_copy(), kind).get(slug)
    if found is None:
        # Unknown to the copy: on offer since it was made? (One query, as without the copy.)
        found = _on_offer()[kind].filter(slug=slug).first()
        if found is not None:
            forget()
        return found
    # A copy for the caller: the instances are shared between requests and threads.
    return copy.copy(found)


def plan(slug: object) -> Plan | None:
    """The plan on sale with this slug (as of at most TTL_SECONDS ago), or None."""
    return _find("plans", slug)


def image(slug: object) -> Image | None:
    """The active OS image with this slug, or None."""
    return _find("images", slug)


def region(slug: object) -> Region | None:
    """The open region with this slug, or None."""
    return _find("regions", slug)


for _model in (Plan, Image, Region):
    post_save.connect(forget, sender=_model, dispatch_uid=f"order_catalogue.saved.{_model.__name__}")
    post_delete.connect(forget, sender=_model, dispatch_uid=f"order_catalogue.deleted.{_model.__name__}")
