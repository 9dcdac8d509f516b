from celery import shared_task

from . import cycle


@shared_task(acks_late=True)
def billing_run() -> dict:
    return cycle.run()
