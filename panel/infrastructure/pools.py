"""IP pools, the panel's side: creating and changing a pool (hypervisor.ipam) together with its line on the
admins' audit log (IP_POOL_CHANGED), in one transaction. The API (`admin/ip-pools/`), the IP pools pages and
`manage.py add_ip_pool` are thin callers of `create_pool` and `update_pool`; `ERROR_FIELDS` and
`UPDATE_ERROR_FIELDS` tell them which of their fields an ipam ValidationError code belongs to."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext_noop

from hypervisor import ipam
from hypervisor.models import IPPool
from panel.activity import log as activity
from panel.models import ActivityEvent, User

# Which field a hypervisor.ipam ValidationError code belongs to (the names of create_pool's arguments, which
# the API's fields and the pool forms' fields share).
ERROR_FIELDS = {
    "invalid_cidr": "cidr",
    "too_large": "cidr",
    "overlap": "cidr",
    "invalid_assignment": "assignment",
    "invalid_gateway": "gateway",
    "invalid_nameserver": "nameservers",
    "invalid_excluded": "excluded",
    "excluded_in_use": "excluded",
    "no_usable_address": "excluded",
    "invalid_name": "name",
}
# Changing a pool, "too large" is about its excluded list (taking out more rows than a pool is made with).
UPDATE_ERROR_FIELDS = ERROR_FIELDS | {"too_large": "excluded"}

# What of a pool may change (ipam.update_pool's keyword arguments), as recorded on the audit log.
CHANGEABLE = ("name", "nameservers", "excluded", "is_active")


def create_pool(actor: User | None, **arguments: Any) -> IPPool:
    """Create a pool (the keyword arguments of hypervisor.ipam.create_pool: region, name, cidr, gateway,
    nameservers, excluded, assignment) and record who did it, in one transaction. `actor` None: an operator
    at the command line. Raises ipam's ValidationError (see ERROR_FIELDS); then nothing is created."""
    with transaction.atomic():
        pool = ipam.create_pool(**arguments)
        activity.record(
            ActivityEvent.Type.IP_POOL_CHANGED,
            summary=gettext_noop("IP pool %(name)s created (%(cidr)s, region %(region)s)."),
            data={"name": pool.name, "cidr": str(pool.cidr), "region": pool.region.name},
            actor=actor,
            target=f"ip_pool:{pool.pk}",
            staff_action=True,
        )
    return pool


def update_pool(pool: IPPool, actor: User | None, **changes: Any) -> IPPool:
    """Change what may change of a pool (the keyword arguments of hypervisor.ipam.update_pool: name,
    nameservers, excluded, is_active; one left out stays as it is) and record what really changed, with its
    new value, under the pool's name before the change, in one transaction; nothing is recorded when every
    value is the one the pool had. Answers the pool as stored now. Raises ipam's ValidationError (see
    UPDATE_ERROR_FIELDS); then nothing changes."""
    with transaction.atomic():
        before = IPPool.objects.select_for_update(of=("self",)).get(pk=pool.pk)
        after = ipam.update_pool(before, **changes)
        changed = {
            name: getattr(after, name)
            for name in CHANGEABLE
            if name in changes and getattr(after, name) != getattr(before, name)
        }
        if changed:
            activity.record(
                ActivityEvent.Type.IP_POOL_CHANGED,
                summary=gettext_noop("IP pool %(name)s changed: %(changes)s."),
                data={"name": before.name, "changes": describe_changes(changed)},
                actor=actor,
                target=f"ip_pool:{after.pk}",
                staff_action=True,
            )
    return after


def describe_changes(changes: dict) -> str:
    """name=…, excluded=[…]: what an admin changed, for the audit log (at most 500 characters)."""
    parts = []
    for name, value in sorted(changes.items()):
        if isinstance(value, list):
            value = "[" + ", ".join(str(item) for item in value) + "]"
        parts.append(f"{name}={value}")
    return ", ".join(parts)[:500] or "-"
