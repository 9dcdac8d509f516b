"""IP pools (IPv4 networks, IPv6 prefixes): admins create and change them, staff may look. State changes go
through panel.infrastructure.pools."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _

from hypervisor import ipam
from hypervisor.models import IPPool
from panel.infrastructure import pools
from panel.infrastructure.forms import IPPoolEditForm, IPPoolForm, add_service_error
from panel.models import Server
from panel.roles import staff_required

ADDRESSES_PER_PAGE = 256


@staff_required
def pool_list(request):
    is_admin = request.user.is_panel_admin
    form = IPPoolForm(request.POST or None) if is_admin else None
    if request.method == "POST":
        if not is_admin:
            raise PermissionDenied
        if form.is_valid():
            try:
                pool = pools.create_pool(request.user, **form.create_kwargs())
            except ValidationError as exc:
                add_service_error(form, exc, IPPoolForm.SERVICE_ERROR_FIELDS)
            else:
                count = pool.addresses.count()
                if pool.assignment == IPPool.Assignment.PREFIX64:
                    text = _("The pool %(name)s was created with %(count)s routed /64s.")
                else:
                    text = _("The pool %(name)s was created with %(count)s addresses.")
                messages.success(request, text % {"name": pool.name, "count": count})
                return redirect("ip-pool-detail", pk=pool.pk)
    listed = ipam.pools_with_usage().order_by("region__name", "name")
    return render(request, "panel/ip_pools/list.html", {"pools": listed, "form": form})


def _describe(addresses, now) -> list[dict]:
    """Each address with what it is now: free, in use (by which server), cooling down or reserved."""
    cooldown = timedelta(minutes=settings.IPV4_COOLDOWN_MINUTES)
    consumers = {a.consumer_uuid for a in addresses if a.consumer_uuid}
    servers = {s.id: s for s in Server.objects.filter(id__in=consumers).only("id", "name", "status")}
    rows = []
    for address in addresses:
        row = {
            "address": address,
            "network": ipam.address_network(address) if address.prefix_length == 64 else "",
            "state": "free",
            "server": None,
            "until": None,
        }
        if address.consumer_uuid:
            row["state"] = "used"
            row["server"] = servers.get(address.consumer_uuid)
        elif address.reserved:
            row["state"] = "reserved"
        elif address.released_at and address.released_at + cooldown > now:
            row["state"] = "cooling"
            row["until"] = address.released_at + cooldown
        rows.append(row)
    return rows


@staff_required
def pool_detail(request, pk: int):
    """A pool and its addresses (or routed /64s); admins change its name, nameservers, excluded list and
    whether it is in use with the form on the page (POST here), staff only look."""
    pool = get_object_or_404(IPPool.objects.select_related("region"), pk=pk)
    form = None
    if request.user.is_panel_admin:
        form = IPPoolEditForm.for_pool(pool, request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form is None:
            raise PermissionDenied
        if form.is_valid():
            try:
                saved = pools.update_pool(pool, request.user, **form.update_kwargs())
            except ValidationError as exc:
                add_service_error(form, exc, IPPoolEditForm.SERVICE_ERROR_FIELDS)
            else:
                messages.success(request, _("The pool %(name)s was saved.") % {"name": saved.name})
                return redirect("ip-pool-detail", pk=pool.pk)
    page = Paginator(pool.addresses.order_by("value", "id"), ADDRESSES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "panel/ip_pools/detail.html",
        {
            "pool": pool,
            "routed": pool.assignment == IPPool.Assignment.PREFIX64,
            "usage": ipam.pool_usage(pool),
            "page": page,
            "rows": _describe(list(page.object_list), timezone.now()),
            "cooldown_minutes": settings.IPV4_COOLDOWN_MINUTES,
            "form": form,
        },
    )
