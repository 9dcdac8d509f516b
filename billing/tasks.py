from celery import shared_task

from . import services


@shared_task(acks_late=True)
def billing_run() -> dict:
    return services.run()
