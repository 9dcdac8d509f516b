"""Celery tasks of the hypervisor app: thin wrappers around hypervisor.hosts."""

from celery import shared_task

from . import backup_targets, host_states, hosts, pool_counts, routing
from .models import Host


@shared_task(acks_late=True)
def probe_host(host_id: int) -> None:
    hosts.probe_host(host_id)


@shared_task(acks_late=True, ignore_result=True)
def check_backup_target(target_id: int) -> None:
    backup_targets.record_check(target_id)


@shared_task(acks_late=True, ignore_result=True)
def check_host(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id, state__in=host_states.CHECKED).first()
    if host is not None:
        hosts.check_host(host)


@shared_task(ignore_result=True)
def check_hosts() -> None:
    """Beat: one health check per ready or down host, each its own task so a hung host delays no other."""
    for host_id, region_id in Host.objects.filter(state__in=host_states.CHECKED).values_list(
        "id", "region_id"
    ):
        check_host.apply_async([host_id], queue=routing.queue_for_region(region_id))


@shared_task(ignore_result=True)
def fold_pool_counts() -> int:
    return pool_counts.fold()
