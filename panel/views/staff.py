"""Staff pages (staff and admins) and host management (admins)."""

from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing.money import currency
from hypervisor import services as hypervisor
from hypervisor import tasks as hypervisor_tasks
from hypervisor.models import Host

from ..forms import HostForm
from ..models import Server, User
from ..models.servers import attach_addresses
from ..roles import admin_required, staff_required


@staff_required
def staff_servers(request):
    servers = (
        Server.objects.exclude(status=Server.Status.DELETED)
        .select_related("owner", "host", "plan", "region", "image")
        .order_by("-created_at")
    )
    status = request.GET.get("status")
    if status:
        servers = servers.filter(status=status)
    query = request.GET.get("q", "").strip()
    if query:
        servers = servers.filter(Q(name__icontains=query) | Q(owner__email__icontains=query))
    template = "panel/staff/_server_rows.html" if request.htmx else "panel/staff/servers.html"
    return render(
        request,
        template,
        {
            "servers": attach_addresses(servers[:500]),
            "statuses": Server.Status.choices,
            "status": status,
            "q": query,
        },
    )


@staff_required
def staff_customers(request):
    customers = User.objects.annotate(
        server_count=Count("servers", filter=~Q(servers__status=Server.Status.DELETED)),
        balance_total=Coalesce(Sum("ledger__amount"), Decimal("0")),
    ).order_by("email")
    return render(request, "panel/staff/customers.html", {"customers": customers, "currency": currency()})


@staff_required
def host_list(request):
    form = HostForm(request.POST or None)
    if request.method == "POST":
        if not request.user.is_panel_admin:
            raise PermissionDenied
        if form.is_valid():
            try:
                with transaction.atomic():
                    host = hypervisor.register_host(**form.cleaned_data)
                    transaction.on_commit(lambda: hypervisor_tasks.probe_host.delay(host.pk))
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, _("Host %(name)s added; probing it now.") % {"name": host.name})
                return redirect("host-detail", pk=host.pk)
    hosts = hypervisor.with_usage(Host.objects.select_related("region")).order_by("name")
    return render(request, "panel/hosts/list.html", {"hosts": hosts, "form": form})


@staff_required
def host_detail(request, pk: int):
    host = get_object_or_404(hypervisor.with_usage(Host.objects.select_related("region")), pk=pk)
    servers = (
        Server.objects.filter(host=host).exclude(status=Server.Status.DELETED).select_related("owner", "plan")
    )
    return render(
        request,
        "panel/hosts/detail.html",
        {
            "host": host,
            "servers": servers,
            "allocated": hypervisor.allocated(host),
            "capacity": host.capacity,
        },
    )


@admin_required
@require_POST
def host_action(request, pk: int):
    host = get_object_or_404(Host, pk=pk)
    action = request.POST.get("action")
    if action == "probe":
        hypervisor_tasks.probe_host.delay(host.pk)
        messages.success(request, _("Probing %(name)s.") % {"name": host.name})
    elif action in ("enable", "disable"):
        Host.objects.filter(pk=pk).update(enabled=action == "enable")
    elif action in ("maintenance_on", "maintenance_off"):
        Host.objects.filter(pk=pk).update(maintenance=action == "maintenance_on")
    return redirect("host-detail", pk=pk)
