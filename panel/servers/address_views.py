"""The server page's address controls: add an additional IPv4 address, remove one, move one to another of
the customer's servers in the region. State changes go through panel.servers.addresses."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing import addons
from billing.money import format_money
from panel import confirmation
from panel.models import Server
from panel.servers import addresses
from panel.servers.actions import ActionError
from panel.servers.queries import own_servers


def network_context(server: Server, user) -> dict:
    """What the Network card shows besides the addresses: the monthly price of one more IPv4 address, and
    the owner's other servers in the region an additional address can move to."""
    targets = []
    if any(row.role == row.Role.ADDITIONAL for row in server.ipv4_addresses):
        targets = list(
            Server.objects.filter(
                owner_id=server.owner_id, region_id=server.region_id, status__in=addresses.CHANGEABLE
            )
            .exclude(pk=server.pk)
            .only("id", "name")
            .order_by("name")
        )
    price = addons.addon_price(addresses.ADDON_KIND, user)
    for row in server.ipv4_addresses:
        if row.role == row.Role.ADDITIONAL:
            row.guest_lines = addresses.guest_instructions(row)  # what the card's "how to" shows
    return {
        "move_targets": targets,
        "extra_ipv4_price": format_money(price) if price else "",
        "addresses_changeable": addresses.can_change(server),
    }


def _back(server: Server):
    return redirect(reverse("server-detail", args=[server.pk]) + "#network-title")


@login_required
@require_POST
def server_address_add(request, pk):
    server = get_object_or_404(own_servers(request), pk=pk)
    try:
        row = addresses.add_address(server, request.user)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("%(address)s was added to %(name)s. Configure it in the server as shown below.")
            % {"address": row.address, "name": server.name},
        )
    return _back(server)


@login_required
@require_POST
def server_address_remove(request, pk):
    server = get_object_or_404(own_servers(request), pk=pk)
    address = request.POST.get("address", "")
    if not confirmation.is_confirmed(request):
        return confirmation.ask(
            request,
            title=_("Remove %(address)s") % {"address": address},
            question=_(
                "Remove the address %(address)s from %(name)s? It goes back to the pool and may be given to "
                "another customer after the cool-down."
            )
            % {"address": address, "name": server.name},
            confirm_label=_("Remove the address"),
            cancel_url=reverse("server-detail", args=[server.pk]),
        )
    try:
        addresses.remove_address(server, address, request.user)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("%(address)s was removed.") % {"address": address})
    return _back(server)


@login_required
@require_POST
def server_address_move(request, pk):
    server = get_object_or_404(own_servers(request), pk=pk)
    address = request.POST.get("address", "")
    target_id = request.POST.get("target", "")
    target = own_servers(request).filter(pk=target_id).first() if _is_uuid(target_id) else None
    if target is None:
        messages.error(request, _("Choose one of your servers in the same region."))
        return _back(server)
    try:
        addresses.move_address(server, address, target, request.user)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _(
                "%(address)s now belongs to %(target)s. Configure it there, and remove it from the network "
                "settings of %(name)s."
            )
            % {"address": address, "target": target.name, "name": server.name},
        )
    return _back(server)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
