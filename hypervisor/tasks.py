from celery import shared_task

from . import services


@shared_task(acks_late=True)
def probe_host(host_id: int) -> None:
    services.probe_host(host_id)
