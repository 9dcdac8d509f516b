"""IP pools (IPv4 networks, IPv6 prefixes): admins create and change them, staff may look. State changes go
through panel.infrastructure.pools."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _

from hypervisor import ipam
from hypervisor.models import IPAddress, IPPool
from panel.infrastructure import pools
from panel.infrastructure.forms import IPPoolEditForm, IPPoolForm, add_service_error
from panel.models import Server
from panel.roles import staff_required

# The pool page lists a pool's addresses (or routed /64s) this many a page, in address order.
ADDRESSES_PER_PAGE = 100


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


def _addresses(pool: IPPool):
    """The pool's addresses in order, each with the name of the server holding it (server_name, None when
    free or when no server of the panel has that id) from the same query."""
    holder = Server.objects.filter(pk=OuterRef("consumer_uuid")).order_by().values("name")[:1]
    return (
        IPAddress.objects.filter(pool=pool)
        .only("address", "prefix_length", "consumer_uuid", "role", "released_at", "reserved", "ptr")
        .annotate(server_name=Subquery(holder))
        .order_by("value", "id")
    )


def _describe(addresses, now) -> list[dict]:
    """Each address with what it is now: free, in use (by which server), cooling down or reserved."""
    cooldown = timedelta(minutes=settings.IPV4_COOLDOWN_MINUTES)
    rows = []
    for address in addresses:
        routed = address.prefix_length == 64
        row = {
            "address": address,
            "network": ipam.address_network(address) if routed else "",
            # The message the template's {% blocktranslate %} had (the same translation), cheaper said here.
            "network_note": _("server address %(address)s") % {"address": address.address} if routed else "",
            "state": "free",
            "server": None,
            "until": None,
        }
        if address.consumer_uuid:
            row["state"] = "used"
            row["server"] = address.server_name
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
    # The pool with its counts (total, used, cooling, reserved) in one query, from the counts the address
    # triggers keep (hypervisor.pool_counts): nothing here counts the pool's addresses one by one.
    pool = get_object_or_404(ipam.pools_with_usage(), pk=pk)
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
    usage = {name: getattr(pool, name) for name in ("total", "used", "cooling", "reserved")}
    paginator = Paginator(_addresses(pool), ADDRESSES_PER_PAGE)
    paginator.count = usage["total"]  # the kept count of the pool's rows: no COUNT over them
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "panel/ip_pools/detail.html",
        {
            "pool": pool,
            "routed": pool.assignment == IPPool.Assignment.PREFIX64,
            "usage": usage,
            "page": page,
            "rows": _describe(list(page.object_list), timezone.now()),
            "cooldown_minutes": settings.IPV4_COOLDOWN_MINUTES,
            "form": form,
        },
    )
