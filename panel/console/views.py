"""The Console tab of the server page: the graphical (noVNC) and serial (xterm.js) consoles in the page or in
a window of their own, and the endpoint their JavaScript (static/panel/console.js) asks for a console token.
The staff pages (staff_views.py) are the same pages for any customer's server."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from panel.console import sessions
from panel.console.models import ConsoleSession
from panel.servers.actions import Conflict
from panel.servers.models import Server
from panel.servers.queries import own_servers

TYPES = ConsoleSession.Type


def console_type(value: str | None) -> str:
    """The console type a page shows: the one asked for, graphical by default."""
    return value if value in TYPES.values else TYPES.VNC


def _checked_type(value: str) -> str:
    if value not in TYPES.values:
        raise Http404("No such console.")
    return value


def page_context(server: Server, chosen: str, *, staff: bool) -> dict:
    """What the Console tab and the console window show; `staff` picks the staff pages' URLs."""
    prefix = "staff-server" if staff else "server"
    console_url = reverse(f"{prefix}-console", args=[server.pk])
    return {
        "server": server,
        "staff": staff,
        "console_type": chosen,
        "console_label": TYPES(chosen).label,
        "types": [
            {"label": label, "href": f"{console_url}?type={value}", "current": value == chosen}
            for value, label in TYPES.choices
        ],
        "running": server.status in sessions.OPEN_STATUSES,
        "not_running": sessions.NOT_RUNNING,
        "overview_url": reverse("staff-server" if staff else "server-detail", args=[server.pk]),
        "console_url": console_url,
        "token_url": reverse(f"{prefix}-console-token", args=[server.pk, chosen]),
        "window_url": reverse(f"{prefix}-console-window", args=[server.pk, chosen]),
    }


def console_page(request: HttpRequest, server: Server, *, staff: bool) -> HttpResponse:
    context = page_context(server, console_type(request.GET.get("type")), staff=staff)
    return render(request, "panel/console/console.html", context)


def console_window(request: HttpRequest, server: Server, chosen: str, *, staff: bool) -> HttpResponse:
    context = page_context(server, _checked_type(chosen), staff=staff)
    return render(request, "panel/console/window.html", context)


def token_response(request: HttpRequest, server: Server, chosen: str) -> JsonResponse:
    """A fresh single-use token's URL (JSON), or 409 with the reason when the server is not running."""
    try:
        url, expires_at = sessions.open_console(server, request.user, _checked_type(chosen), request)
    except Conflict as exc:
        return JsonResponse({"detail": exc.message}, status=409)
    return JsonResponse({"url": url, "expires_at": expires_at.isoformat()})


def _own_server(request: HttpRequest, pk) -> Server:
    return get_object_or_404(own_servers(request), pk=pk)


@login_required
def server_console(request: HttpRequest, pk) -> HttpResponse:
    return console_page(request, _own_server(request, pk), staff=False)


@login_required
def server_console_window(request: HttpRequest, pk, console_type: str) -> HttpResponse:
    return console_window(request, _own_server(request, pk), console_type, staff=False)


@login_required
@require_POST
def server_console_token(request: HttpRequest, pk, console_type: str) -> JsonResponse:
    return token_response(request, _own_server(request, pk), console_type)
