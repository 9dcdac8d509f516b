"""The Celery application: `celery -A panel worker` and `celery -A panel beat`."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")

app = Celery("panel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task=None, **kwargs) -> None:
    """Database connections are kept between tasks as Django keeps them between requests (CONN_MAX_AGE,
    dropped when broken or in a failed transaction). Celery's own fixup would open a new connection for
    every task (a Postgres backend process each time) unless CELERY_DB_REUSE_MAX is set, which it is."""
    from django.db import close_old_connections

    if task is not None and getattr(task.request, "is_eager", False):
        return  # run inline by the caller, inside its own transaction
    close_old_connections()
