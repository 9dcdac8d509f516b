"""Host pages for staff and host management for admins: register, probe, enable, maintenance, settings."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from hypervisor import credentials, host_states, placement, routing
from hypervisor.hosts import forget_host_keys, register_host, set_enabled, update_settings
from hypervisor.models import Host, Region
from panel import dispatch
from panel.activity import log as activity
from panel.infrastructure.forms import HostForm, HostSettingsForm, add_service_error
from panel.infrastructure.host_move_views import move_context
from panel.models import Notice, Server, User
from panel.roles import admin_required, staff_required

# The host list shows this many hosts a page (by name), so that a thousand hosts render as fast as fifty.
HOSTS_PER_PAGE = 50
# The host page lists its servers this many a page, newest first (a host may run hundreds).
HOST_SERVERS_PER_PAGE = 50


def _open_notices():
    return Notice.objects.filter(resolved_at__isnull=True).order_by("-updated_at")[:50]


def _register_host(form: HostForm, actor: User) -> Host | None:
    """Register the host and start probing it after commit; service errors go onto the form."""
    try:
        with transaction.atomic():
            host = register_host(**form.register_kwargs())
            activity.record_host_change(
                host, actor, gettext_noop("Host %(host)s added (%(uri)s)."), {"uri": host.uri}
            )
            dispatch.after_commit(dispatch.PROBE_HOST, host.pk, queue=routing.queue_for_host(host))
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
    hosts = Host.objects.select_related("region").order_by("name", "id")
    query = request.GET.get("q", "").strip()
    if query:
        hosts = hosts.filter(Q(name__icontains=query) | Q(uri__icontains=query))
    region = request.GET.get("region", "")
    if region:
        hosts = hosts.filter(region__slug=region)
    state = request.GET.get("state", "")
    if state:
        hosts = hosts.filter(state=state)
    page = Paginator(hosts, HOSTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "panel/hosts/list.html",
        {
            "hosts": page.object_list,
            "page": page,
            "q": query,
            "region": region,
            "regions": Region.objects.order_by("name"),
            "state": state,
            "states": Host.State.choices,
            "filtered": bool(query or region or state),
            "form": form,
            "notices": _open_notices(),
            # Only admins onboard hosts; the first call generates the panel's key pair.
            "authorized_keys_line": credentials.authorized_keys_line() if is_admin else "",
        },
    )


# The columns the host page's server table shows; the owner's email comes from a subquery on the page's
# rows (a join with the owners let Postgres hash every account to list 50 servers).
HOST_SERVER_FIELDS = ("name", "owner_id", "status", "task", "vcpus", "memory_mib", "disk_gib", "created_at")


def _host_servers(host: Host):
    """The host's live servers, newest first, with what the page shows of each (owner_email, plan)."""
    owner_email = User.objects.filter(pk=OuterRef("owner_id")).order_by().values("email")[:1]
    return (
        Server.objects.filter(host=host)
        .exclude(status=Server.Status.DELETED)
        .select_related("plan")
        .only(*HOST_SERVER_FIELDS, "plan__name")
        .annotate(owner_email=Subquery(owner_email))
        .order_by("-created_at", "id")
    )


def _render_host_detail(request, host: Host, settings_form: HostSettingsForm | None = None):
    is_admin = request.user.is_panel_admin
    if settings_form is None and is_admin:
        settings_form = HostSettingsForm.for_host(host)
    page = Paginator(_host_servers(host), HOST_SERVERS_PER_PAGE).get_page(request.GET.get("page"))
    inventory = host.inventory if isinstance(host.inventory, dict) else {}
    return render(
        request,
        "panel/hosts/detail.html",
        {
            "host": host,
            "servers": page.object_list,
            "page": page,
            "allocated": placement.allocated(host),
            "capacity": host.capacity,
            "inventory": inventory,
            "host_key_fingerprints": credentials.host_key_fingerprints(host.ssh_host_keys),
            "authorized_keys_line": (
                credentials.authorized_keys_line() if is_admin and host.transport == "qemu+ssh" else ""
            ),
            "settings_form": settings_form,
            "probing": host.state in host_states.AWAITING_PROBE,
            **move_context(host),  # a drain's or an evacuation's progress, and the drain form
        },
    )


def _host_with_usage(pk: int) -> Host:
    return get_object_or_404(Host.objects.select_related("region"), pk=pk)


@staff_required
def host_detail(request, pk: int):
    host = _host_with_usage(pk)
    if request.htmx and request.headers.get("HX-Trigger") == "host-probing":
        # The page polls while the host is being probed: nothing to swap until the probe has finished,
        # then reload the whole page so capacity, facts and inventory show what the probe found.
        if host.state in host_states.AWAITING_PROBE:
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
                update_settings(host.pk, form.cleaned_data)
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
        dispatch.send(dispatch.PROBE_HOST, [host.pk], queue=routing.queue_for_host(host))
        messages.success(request, _("Probing %(name)s.") % name)
    elif action == "enable":
        with transaction.atomic():
            set_enabled(host.pk, True)
            activity.record_host_change(host, request.user, gettext_noop("Host %(host)s enabled."))
        messages.success(request, _("%(name)s is enabled: it takes new servers again.") % name)
    elif action == "disable":
        reason = request.POST.get("reason", "").strip()
        with transaction.atomic():
            set_enabled(host.pk, False, reason)
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
            update_settings(host.pk, {"maintenance": action == "maintenance_on"})
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
            forget_host_keys(host.pk)
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
