"""`manage.py console_proxy [--bind HOST:PORT]`: the websocket console proxy (`panel.console.proxy`).
SIGTERM or SIGINT stops it."""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings
from django.core.management.base import BaseCommand

from panel.console import proxy


class Command(BaseCommand):
    help = (
        "Serve the browser consoles: joins websockets that carry a single-use console token to the server's "
        "graphical (VNC) or serial console."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--bind", default=settings.CONSOLE_BIND, help="HOST:PORT to listen on (default CONSOLE_BIND)"
        )

    def handle(self, *args, bind: str, **options) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(proxy.serve_forever(bind))
