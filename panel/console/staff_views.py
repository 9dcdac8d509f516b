"""The Console tab of the staff server page: any customer's server's consoles (the customer's own pages are
in views.py). Opening one is recorded in the customer's activity log as a staff action."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_POST

from panel.console import views
from panel.roles import staff_required
from panel.servers.models import Server


def _server(pk) -> Server:
    return get_object_or_404(Server.objects.select_related("owner", "host", "plan", "region", "image"), pk=pk)


@staff_required
def staff_server_console(request: HttpRequest, pk) -> HttpResponse:
    return views.console_page(request, _server(pk), staff=True)


@staff_required
def staff_server_console_window(request: HttpRequest, pk, console_type: str) -> HttpResponse:
    return views.console_window(request, _server(pk), console_type, staff=True)


@staff_required
@require_POST
def staff_server_console_token(request: HttpRequest, pk, console_type: str) -> JsonResponse:
    return views.token_response(request, _server(pk), console_type)
