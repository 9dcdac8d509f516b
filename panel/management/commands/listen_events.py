"""`manage.py listen_events`: the process that applies libvirt lifecycle events to servers within seconds
(`hypervisor.events.EventListener` with `panel.servers.power_events`). SIGTERM or SIGINT stops it cleanly:
it lets every host go, applies what is queued and closes its database connections."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand

from hypervisor.events import EventListener
from panel.servers import power_events


class Command(BaseCommand):
    help = (
        "Listen to the libvirt lifecycle events of every ready host and make servers follow their domains "
        "at once (a guest that shut itself down shows as stopped within seconds)."
    )

    def handle(self, *args, **options) -> None:
        listener = EventListener(on_event=power_events.apply_event, on_connected=power_events.catch_up)

        def stop(_signum, _frame) -> None:
            listener.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        listener.run()
