"""Staff pages (staff and admins) and host management (admins)."""

from functools import partial

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from billing import services as billing
from billing.money import currency
from hypervisor import credentials
from hypervisor import services as hypervisor
from hypervisor import tasks as hypervisor_tasks
from hypervisor.models import Host

from .. import activity, quotas
from ..forms import HostForm, HostSettingsForm, QuotaForm, add_service_error
from ..models import Notice, Server, User
from ..models.servers import attach_addresses
from ..roles import admin_required, staff_required

STAFF_SERVERS_PER_PAGE = 50
STAFF_CUSTOMERS_PER_PAGE = 50


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


def _live_server_count():
    """Each user's live servers, as a subquery of its own (next to the balance's, nothing multiplies)."""
    live = (
        Server.objects.filter(owner=OuterRef("pk"))
        .exclude(status=Server.Status.DELETED)
        .order_by()
        .values("owner")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(live, output_field=IntegerField()), 0)


@staff_required
def staff_customers(request):
    customers = billing.annotate_balance(User.objects.annotate(server_count=_live_server_count()))
    query = request.GET.get("q", "").strip()
    if query:
        customers = customers.filter(email__icontains=query)
    page = Paginator(customers.order_by("email", "id"), STAFF_CUSTOMERS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "panel/staff/customers.html",
        {"customers": page.object_list, "page": page, "q": query, "currency": currency()},
    )


def _open_notices():
    return Notice.objects.filter(resolved_at__isnull=True).order_by("-updated_at")[:50]


def _register_host(form: HostForm, actor: User) -> Host | None:
    """Register the host and start probing it after commit; service errors go onto the form."""
    try:
        with transaction.atomic():
            host = hypervisor.register_host(**form.register_kwargs())
            activity.record_host_change(
                host, actor, gettext_noop("Host %(host)s added (%(uri)s)."), {"uri": host.uri}
            )
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
        if form.is_valid() and (host := _register_host(form, request.user)) is not None:
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
            with transaction.atomic():
                hypervisor.update_settings(host.pk, form.cleaned_data)
                changed = {
                    name: value
                    for name, value in form.cleaned_data.items()
                    if getattr(host, name, None) != value
                }
                activity.record_host_change(
                    host,
                    request.user,
                    gettext_noop("Host %(host)s changed: %(changes)s."),
                    {"changes": ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "-"},
                )
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
        with transaction.atomic():
            hypervisor.set_enabled(host.pk, True)
            activity.record_host_change(host, request.user, gettext_noop("Host %(host)s enabled."))
        messages.success(request, _("%(name)s is enabled: it takes new servers again.") % name)
    elif action == "disable":
        reason = request.POST.get("reason", "").strip()
        with transaction.atomic():
            hypervisor.set_enabled(host.pk, False, reason)
            activity.record_host_change(
                host,
                request.user,
                gettext_noop("Host %(host)s disabled: %(reason)s"),
                {"reason": reason or "-"},
            )
        messages.success(
            request, _("%(name)s is disabled: it takes no new servers; existing ones keep running.") % name
        )
    elif action in ("maintenance_on", "maintenance_off"):
        with transaction.atomic():
            hypervisor.update_settings(host.pk, {"maintenance": action == "maintenance_on"})
            activity.record_host_change(
                host,
                request.user,
                gettext_noop("Host %(host)s put in maintenance.")
                if action == "maintenance_on"
                else gettext_noop("Host %(host)s out of maintenance."),
            )
        if action == "maintenance_on":
            messages.success(
                request, _("%(name)s is in maintenance: no new servers are placed on it.") % name
            )
        else:
            messages.success(request, _("Maintenance of %(name)s has ended.") % name)
    elif action == "forget_host_keys":
        with transaction.atomic():
            hypervisor.forget_host_keys(host.pk)
            activity.record_host_change(
                host, request.user, gettext_noop("Recorded SSH host keys of %(host)s forgotten.")
            )
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
    if request.method == "POST" and request.POST.get("action") == "lift_new_account_limits":
        return _lift_new_account_limits(request, customer)
    quota = quotas.quota_for(customer)
    form = QuotaForm(request.POST or None, initial=quota.limits())
    if request.method == "POST" and form.is_valid():
        try:
            quotas.set_limits(customer, form.cleaned_data, by=request.user)
        except quotas.OwnAccount as exc:
            form.add_error(None, exc.message)
        else:
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
         "balance": billing.balance(customer), "currency": currency(),
         "new_account_quota": quotas.new_account_rows(), "lift_amount": quotas.lift_amount()},
    )  # fmt: skip


def _lift_new_account_limits(request, customer: User):
    try:
        lifted = quotas.lift_new_account_limits(customer, by=request.user)
    except quotas.OwnAccount as exc:
        messages.error(request, exc.message)
        return redirect("staff-customer", pk=customer.pk)
    if lifted:
        messages.success(
            request, _("The new-account limits of %(email)s were lifted.") % {"email": customer.email}
        )
    else:
        messages.info(request, _("%(email)s has no new-account limits.") % {"email": customer.email})
    return redirect("staff-customer", pk=customer.pk)
