"""Staff pages (staff and admins) and host management (admins)."""

from decimal import Decimal
from functools import partial

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from billing import services as billing
from billing.money import currency
from hypervisor import credentials
from hypervisor import services as hypervisor
from hypervisor import tasks as hypervisor_tasks
from hypervisor.models import Host

from .. import quotas
from ..forms import HostForm, HostSettingsForm, QuotaForm, add_service_error
from ..models import Notice, Server, User
from ..models.servers import attach_addresses
from ..roles import admin_required, staff_required

STAFF_SERVERS_PER_PAGE = 50


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
    page = Paginator(servers, STAFF_SERVERS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        template,
        {
            "servers": attach_addresses(page.object_list),
            "page": page,
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


def _open_notices():
    return Notice.objects.filter(resolved_at__isnull=True).order_by("-updated_at")[:50]


def _register_host(form: HostForm) -> Host | None:
    """Register the host and start probing it after commit; service errors go onto the form."""
    try:
        with transaction.atomic():
            host = hypervisor.register_host(**form.register_kwargs())
            transaction.on_commit(partial(hypervisor_tasks.probe_host.delay, host.pk))
    except ValidationError as exc:
        add_service_error(form, exc, HostForm.SERVICE_ERROR_FIELDS)
        return None
    return host


@staff_required
def host_list(request):
    is_admin = request.user.is_panel_admin
    form = HostForm(request.POST or None, request.FILES or None) if is_admin else None
    if request.method == "POST":
        if not is_admin:
            raise PermissionDenied
        if form.is_valid() and (host := _register_host(form)) is not None:
            messages.success(request, _("Host %(name)s was added; probing it now.") % {"name": host.name})
            if host.transport == "qemu+ssh":
                messages.info(
                    request,
                    _(
                        "If the probe fails because the host refuses the panel's SSH key, add the key shown "
                        "on this page to the host's authorized_keys and probe again."
                    ),
                )
            return redirect("host-detail", pk=host.pk)
    hosts = hypervisor.with_usage(Host.objects.select_related("region")).order_by("name")
    return render(
        request,
        "panel/hosts/list.html",
        {
            "hosts": hosts,
            "form": form,
            "notices": _open_notices(),
            # Only admins onboard hosts; the first call generates the panel's key pair.
            "authorized_keys_line": credentials.authorized_keys_line() if is_admin else "",
        },
    )


def _render_host_detail(request, host: Host, settings_form: HostSettingsForm | None = None):
    is_admin = request.user.is_panel_admin
    if settings_form is None and is_admin:
        settings_form = HostSettingsForm.for_host(host)
    servers = (
        Server.objects.filter(host=host).exclude(status=Server.Status.DELETED).select_related("owner", "plan")
    )
    inventory = host.inventory if isinstance(host.inventory, dict) else {}
    return render(
        request,
        "panel/hosts/detail.html",
        {
            "host": host,
            "servers": servers,
            "allocated": hypervisor.allocated(host),
            "capacity": host.capacity,
            "inventory": inventory,
            "host_key_fingerprints": credentials.host_key_fingerprints(host.ssh_host_keys),
            "authorized_keys_line": (
                credentials.authorized_keys_line() if is_admin and host.transport == "qemu+ssh" else ""
            ),
            "settings_form": settings_form,
            "probing": host.state in (Host.State.NEW, Host.State.PROBING),
        },
    )


def _host_with_usage(pk: int) -> Host:
    return get_object_or_404(hypervisor.with_usage(Host.objects.select_related("region")), pk=pk)


@staff_required
def host_detail(request, pk: int):
    host = _host_with_usage(pk)
    if request.htmx and request.headers.get("HX-Trigger") == "host-probing":
        # The page polls while the host is being probed: nothing to swap until the probe has finished,
        # then reload the whole page so capacity, facts and inventory show what the probe found.
        if host.state in (Host.State.NEW, Host.State.PROBING):
            return HttpResponse(status=204)
        return HttpResponseClientRefresh()
    return _render_host_detail(request, host)


@admin_required
@require_POST
def host_settings(request, pk: int):
    host = _host_with_usage(pk)
    form = HostSettingsForm.for_host(host, request.POST)
    if form.is_valid():
        reprobe = form.changed_probed_fields(host)
        try:
            hypervisor.update_settings(host.pk, form.cleaned_data)
        except ValidationError as exc:
            add_service_error(form, exc, {})
        else:
            messages.success(request, _("The settings of %(name)s were saved.") % {"name": host.name})
            if reprobe:
                messages.info(
                    request,
                    _(
                        "The storage pool, network, bridge or emulation setting changed: probe the host "
                        "again (“Probe now”) so that it is checked and used for new servers."
                    ),
                )
            return redirect("host-detail", pk=host.pk)
    messages.error(request, _("The settings were not saved: please correct the errors below."))
    return _render_host_detail(request, host, settings_form=form)


@admin_required
@require_POST
def host_action(request, pk: int):
    host = get_object_or_404(Host, pk=pk)
    action = request.POST.get("action")
    name = {"name": host.name}
    if action == "probe":
        hypervisor_tasks.probe_host.delay(host.pk)
        messages.success(request, _("Probing %(name)s.") % name)
    elif action == "enable":
        hypervisor.set_enabled(host.pk, True)
        messages.success(request, _("%(name)s is enabled: it takes new servers again.") % name)
    elif action == "disable":
        hypervisor.set_enabled(host.pk, False, request.POST.get("reason", "").strip())
        messages.success(
            request, _("%(name)s is disabled: it takes no new servers; existing ones keep running.") % name
        )
    elif action in ("maintenance_on", "maintenance_off"):
        hypervisor.update_settings(host.pk, {"maintenance": action == "maintenance_on"})
        if action == "maintenance_on":
            messages.success(
                request, _("%(name)s is in maintenance: no new servers are placed on it.") % name
            )
        else:
            messages.success(request, _("Maintenance of %(name)s has ended.") % name)
    elif action == "forget_host_keys":
        hypervisor.forget_host_keys(host.pk)
        messages.success(
            request,
            _(
                "The recorded SSH host keys of %(name)s were forgotten. The next probe records the keys the "
                "host presents then: probe it only when you are sure you reach the right machine."
            )
            % name,
        )
    else:
        messages.error(request, _("Unknown action."))
    return redirect("host-detail", pk=pk)


@staff_required
def customer_detail(request, pk: int):
    customer = get_object_or_404(User, pk=pk)
    quota = quotas.quota_for(customer)
    form = QuotaForm(request.POST or None, initial=quota.limits())
    if request.method == "POST" and form.is_valid():
        quotas.set_limits(customer, form.cleaned_data)
        messages.success(request, _("The quota of %(email)s was saved.") % {"email": customer.email})
        return redirect("staff-customer", pk=pk)
    servers = attach_addresses(
        Server.objects.filter(owner=customer)
        .exclude(status=Server.Status.DELETED)
        .select_related("plan", "host")
    )
    return render(
        request,
        "panel/staff/customer_detail.html",
        {"customer": customer, "form": form, "quota": quotas.quota_rows(customer), "servers": servers,
         "balance": billing.balance(customer), "currency": currency()},
    )  # fmt: skip
