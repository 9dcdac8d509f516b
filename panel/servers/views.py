"""Customer pages for servers: list, order, detail with live status, actions."""

import hashlib
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from billing import prices, subscriptions
from billing.models import Plan, Subscription
from billing.money import currency
from hypervisor.models import Image
from panel import confirmation
from panel.accounts import quotas
from panel.models import Backup, Operation, Server, Snapshot
from panel.servers import actions, catalog, failures, passwords, resize_quotes, reverse_dns, states
from panel.servers.address_views import network_context
from panel.servers.descriptions import describe_all, recent_operations
from panel.servers.forms import OrderForm, PtrForm
from panel.servers.operation_states import OPEN
from panel.servers.queries import attach_addresses, own_servers
from panel.servers.states import Task


def _live_servers(request):
    return own_servers(request).exclude(status=Server.Status.DELETED)


@login_required
def server_list(request):
    servers = attach_addresses(_live_servers(request))
    template = "panel/servers/_rows.html" if request.htmx else "panel/servers/list.html"
    # An empty list after deleting servers is not a first visit.
    had_servers = not servers and own_servers(request).filter(status=Server.Status.DELETED).exists()
    return render(request, template, {"servers": servers, "had_servers": had_servers})


def _backup_to_order_from(request) -> Backup | None:
    """The backup a new server is made from (?backup=<id>): a succeeded backup, still kept, of one of the
    customer's servers; 404 for anything else."""
    wanted = request.GET.get("backup")
    if wanted is None:
        return None
    if not wanted.isdigit():
        raise Http404(_("No such backup."))
    return get_object_or_404(
        Backup.objects.usable().select_related("server__region", "server__image"),
        pk=int(wanted),
        server__owner=request.user,
    )


@login_required
def server_order(request):
    backup = _backup_to_order_from(request)
    region = request.GET.get("region") or (backup.server.region_id if backup else None)
    form = OrderForm(request.POST or None, user=request.user, backup=backup, initial={"region": region})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            server = actions.order_from(request.user, data)
        except actions.ActionError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Your server %(name)s is being created.") % {"name": server.name})
            return redirect("server-detail", pk=server.pk)
    # Which plans each open region can take now, for the plan cards to follow the region select.
    regions = list(catalog.open_regions())
    availability = {str(region.pk): sorted(catalog.available_plans(region)) for region in regions}
    region = str(form["region"].value() or "")
    if region not in availability:  # nothing or something odd chosen: the select shows the first region
        region = next(iter(availability), "")
    return render(
        request,
        "panel/servers/order.html",
        {
            "form": form,
            "available_plans": set(availability.get(region, [])),
            "plan_availability": availability,
            "currency": currency(),
            "plans": form.fields["plan"].queryset,
            "backup": backup,
        },
    )


@dataclass
class ResizeChoice:
    """A plan the server could move to, with what would change and what stands in the way."""

    plan: Plan
    disk_too_small: bool
    price_delta: Decimal
    # What the change costs now (positive) or credits (negative) for the rest of the paid period, when the
    # server has a monthly subscription (billing.prices.proration), as of the quote's moment.
    proration: Decimal | None = None
    no_room: bool = False  # the server's host cannot take the plan now
    over_quota: bool = False  # the customer's quota does not allow the plan's size
    snapshots_block: bool = False  # the disk would grow, but an old-format disk with snapshots cannot

    @property
    def price_delta_abs(self) -> Decimal:
        return abs(self.price_delta)

    @property
    def proration_abs(self) -> Decimal | None:
        return None if self.proration is None else abs(self.proration)

    @property
    def available(self) -> bool:
        return not (self.disk_too_small or self.no_room or self.over_quota or self.snapshots_block)


RESIZED_RESOURCES = ("vcpus", "memory_mib", "disk_gib")


def _fits(plan: Plan, room) -> bool:
    return plan.vcpus <= room.vcpus and plan.memory_mib <= room.memory_mib and plan.disk_gib <= room.disk_gib


def _resize_choices(
    server: Server,
    subscription: Subscription | None = None,
    has_snapshots: bool = False,
    at=None,
    owner=None,
) -> list[ResizeChoice]:
    """The plans on sale besides the server's own, each marked with what stands in the way of moving to it:
    a smaller disk, no room on the server's host, the customer's quota, snapshots on an old-format disk."""
    plans = list(Plan.objects.filter(is_active=True).exclude(pk=server.plan_id))
    prorations = prices.proration_preview(subscription, plans, at) if subscription else {}
    room = catalog.resize_room(server.id)
    owner = owner or server.owner
    limits = quotas.limits_of(owner)
    limited = tuple(name for name in RESIZED_RESOURCES if limits.get(name) is not None)
    used = quotas.usage(owner, limited) if limited else {}
    current = {"vcpus": server.vcpus, "memory_mib": server.memory_mib, "disk_gib": server.disk_gib}

    def over_quota(plan: Plan) -> bool:
        new = {"vcpus": plan.vcpus, "memory_mib": plan.memory_mib, "disk_gib": plan.disk_gib}
        more = {name: new[name] - current[name] for name in limited}
        return quotas.exceeded(limits, used, more) is not None

    return [
        ResizeChoice(
            plan=plan,
            disk_too_small=plan.disk_gib < server.disk_gib,
            price_delta=plan.price_monthly - server.plan.price_monthly,
            proration=prorations.get(plan.pk),
            no_room=room is not None and not _fits(plan, room),
            over_quota=over_quota(plan),
            snapshots_block=has_snapshots
            and not server.disk_grows_with_snapshots
            and plan.disk_gib > server.disk_gib,
        )
        for plan in plans
    ]


@dataclass
class RebuildChoice:
    image: Image
    fits: bool
    needs_gib: int


def _rebuild_choices(server: Server, os_images=None) -> list[RebuildChoice]:
    """`os_images`: the OS images on offer, when the caller has read them already."""
    disk_bytes = server.disk_gib * 1024**3
    return [
        RebuildChoice(
            image=image,
            fits=image.virtual_size_bytes <= disk_bytes,
            needs_gib=-(-image.virtual_size_bytes // 1024**3),
        )
        for image in (catalog.active_images() if os_images is None else os_images)
    ]


def _in_flight(server: Server, operations: list[Operation]) -> Operation | None:
    """The operation running the server's task now, for its step and time on the page."""
    if not server.task:
        return None
    return next((op for op in operations if op.status in OPEN), None)


def _state_key(server: Server, *parts) -> str:
    """A short digest of everything the action cards show. The polled fragment keeps the cards the browser
    has (hx-preserve, keyed by this digest) while it is unchanged, so that a half-filled form survives the
    polling; any change renders them anew."""
    state = (
        server.status, server.task, server.name, server.plan_id, server.image_id, server.vcpus,
        server.memory_mib, server.disk_gib, settings.SNAPSHOT_LIMIT, get_language(), *parts,
    )  # fmt: skip
    return hashlib.sha256(repr(state).encode()).hexdigest()[:16]


def _detail_context(request, server: Server) -> dict:
    allowed = actions.allowed_actions(server)
    # The actions the status permits, whether or not another action is in flight: their cards stay on the
    # page (without controls) while a task runs, instead of jumping away and back.
    possible = {action for action, rule in states.ACTIONS.items() if server.status in rule.allowed_from}
    # The owner asking: no second look-up of the account.
    owner = request.user if server.owner_id == request.user.pk else None
    snapshots = list(Snapshot.objects.filter(server=server))
    subscription = subscriptions.active_subscription(str(server.id)) if Task.RESIZE in possible else None
    if subscription is not None and subscription.account_id == request.user.pk:
        subscription.account = request.user  # the owner is asking: no second look-up of the account
    # One moment for the prices shown and the quote the form sends back (honoured for a while).
    quoted_at = timezone.now()
    paid_through = subscription.paid_through if subscription else None
    resize = (
        _resize_choices(server, subscription, bool(snapshots), quoted_at, owner)
        if Task.RESIZE in possible
        else []
    )
    # The OS images to rebuild with, the ISOs to attach and the rescue system, in one query.
    offered = catalog.offered_images() if {Task.REBUILD, Task.ATTACH_ISO, Task.RESCUE} & possible else []
    rebuild = (
        _rebuild_choices(server, [i for i in offered if i.purpose == Image.Purpose.OS])
        if Task.REBUILD in possible
        else []
    )
    isos = [i for i in offered if i.purpose == Image.Purpose.ISO] if Task.ATTACH_ISO in possible else []
    # (as hypervisor.images.rescue_image finds it: an available image of purpose rescue)
    rescue_available = Task.RESCUE in possible and any(i.purpose == Image.Purpose.RESCUE for i in offered)
    key = _state_key(
        server,
        [
            (
                c.plan.pk,
                c.plan.name,
                c.plan.vcpus,
                c.plan.memory_mib,
                c.plan.disk_gib,
                c.price_delta,
                c.no_room,
                c.over_quota,
                c.snapshots_block,
            )
            for c in resize
        ],  # fmt: skip
        [(c.image.pk, c.image.name, c.fits) for c in rebuild],
        [(s.pk, s.name) for s in snapshots],
        (server.iso_id, [(iso.pk, iso.name) for iso in isos]),
        rescue_available,
        # Not the prorated amounts themselves (they shrink by the minute): the subscription they follow.
        (subscription.pk, subscription.cycle, subscription.price, subscription.paid_through)
        if subscription
        else None,
    )
    # The resize card's price quote is drawn anew every few minutes, well within its validity; the other
    # cards keep what the customer is typing.
    resize_key = hashlib.sha256(f"{key}:{resize_quotes.window()}".encode()).hexdigest()[:16]
    operations = recent_operations(server)
    return {
        "server": server,
        "allowed": allowed,
        "failure": failures.notice(server, operations, for_staff=request.user.is_panel_staff),
        "power_off_question": states.POWER_OFF_QUESTION % {"name": server.name},
        "current_operation": _in_flight(server, operations),
        "possible": possible,
        "state_key": key,
        "resize_key": resize_key,
        "operations": operations,
        "currency": currency(),
        "resize_choices": resize,
        "resize_blocks": {
            block
            for c in resize
            for block in ("no_room", "over_quota", "snapshots_block")
            if getattr(c, block)
        },
        "resize_quote": resize_quotes.make(
            server.id,
            server.plan.slug,
            paid_through,
            {c.plan.slug: c.proration for c in resize if c.proration is not None},
            quoted_at,
        )
        if resize
        else "",
        "subscription": subscription,
        "downgrade_credit": settings.PRORATE_DOWNGRADE_CREDIT,
        "rebuild_choices": rebuild,
        "isos": isos,
        "rescue_available": rescue_available,
        "confirm_questions": {str(a): q % {"name": server.name} for a, q in CONFIRM_QUESTIONS.items()},
        "show_snapshots": Task.SNAPSHOT in possible
        or (snapshots and server.status not in (Server.Status.DELETING, Server.Status.DELETED)),
        "snapshots": snapshots,
        "snapshot_limit": settings.SNAPSHOT_LIMIT,
        "snapshots_full": len(snapshots) >= settings.SNAPSHOT_LIMIT,
    }


@login_required
def server_detail(request, pk):
    server = get_object_or_404(own_servers(request), pk=pk)
    context = _detail_context(request, server)
    context.update(network_context(server, request.user))
    # The one-time root password of a rescue or password reset just asked for without JavaScript.
    context["one_time_password"] = passwords.take_for_page(request, server.pk)
    return render(request, "panel/servers/detail.html", context)


@login_required
def server_status(request, pk):
    """The live part of the server page, polled by htmx."""
    server = get_object_or_404(own_servers(request), pk=pk)
    return render(request, "panel/servers/_status.html", _detail_context(request, server))


# Actions that destroy data and need the server's hostname typed to confirm.
CONFIRM_BY_HOSTNAME = {
    Task.DELETE: gettext_lazy("Type the server's hostname to confirm deletion."),
    Task.REBUILD: gettext_lazy("Type the server's hostname to confirm the rebuild."),
}
ACTION_PARAMS = ("plan", "image", "name", "snapshot", "quote", "iso", "password")
# Rescue mode asks first too (hx-confirm in the browser; without JavaScript, on a page of its own).
CONFIRM_QUESTIONS = {
    Task.RESCUE: states.RESCUE_QUESTION,
    Task.UNRESCUE: states.UNRESCUE_QUESTION,
}


@sensitive_post_parameters("password")  # a root password chosen for a reset stays out of error reports
@login_required
@require_POST
def server_action(request, pk):
    server = get_object_or_404(own_servers(request), pk=pk)
    action = request.POST.get("action", "")
    one_time = None
    if action == Task.POWER_OFF and not confirmation.is_confirmed(request):
        # Asked in the browser (hx-confirm); without JavaScript, on a page of its own.
        return confirmation.ask(
            request,
            title=_("Power off %(name)s") % {"name": server.name},
            question=states.POWER_OFF_QUESTION % {"name": server.name},
            confirm_label=_("Power off"),
            cancel_url=reverse("server-detail", args=[server.pk]),
        )
    if action in CONFIRM_QUESTIONS and not confirmation.is_confirmed(request):
        return confirmation.ask(
            request,
            title=f"{Task(action).label} · {server.name}",
            question=CONFIRM_QUESTIONS[action] % {"name": server.name},
            confirm_label=str(Task(action).label),
            cancel_url=reverse("server-detail", args=[server.pk]),
        )
    if action in CONFIRM_BY_HOSTNAME:
        typed = request.POST.get("confirm", "").strip().lower()
        if typed != server.name.lower():
            messages.error(request, CONFIRM_BY_HOSTNAME[action])
            return _after_action(request, server)
    try:
        if action == Task.DELETE:
            actions.delete_server(server, request.user)
            messages.success(request, _("%(name)s is being deleted.") % {"name": server.name})
            if request.htmx:
                return HttpResponseClientRedirect(reverse("server-list"))
            return redirect("server-list")
        if action not in actions.CUSTOMER_ACTIONS:
            messages.error(request, _("Unknown action."))
        else:
            params = {name: request.POST[name] for name in ACTION_PARAMS if name in request.POST}
            operation = actions.perform(server, action, request.user, params)
            if action in actions.PASSWORD_ACTIONS:
                one_time = {"action": action, "password": operation.one_time_password}
            if action not in actions.POWER_ACTIONS:
                # Started far down the page: say so where the page's messages are.
                messages.success(
                    request,
                    _("%(action)s: started. This page shows when it has finished.")
                    % {"action": describe_all([operation])[0].summary},
                )
    except actions.ActionError as exc:
        messages.error(request, exc.message)
    return _after_action(request, server, one_time)


def _after_action(request, server: Server, one_time: dict | None = None):
    """The answer to an action: the page's live part (htmx), or the page again. A one-time password is
    shown once: in that answer, or on the page the redirect leads to (kept encrypted until then)."""
    if request.htmx:
        server.refresh_from_db()
        context = _detail_context(request, server)
        context["one_time_password"] = one_time
        return render(request, "panel/servers/_status.html", context)
    if one_time:
        passwords.keep_for_next_page(request, server.pk, one_time["action"], one_time["password"])
    return redirect("server-detail", pk=server.pk)


@login_required
@require_POST
def server_ptr(request, pk):
    """The customer sets or clears the reverse DNS (PTR) name of one of their server's addresses."""
    server = get_object_or_404(own_servers(request), pk=pk)
    form = PtrForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("server-detail", pk=server.pk)
    try:
        row = reverse_dns.set_reverse_dns(
            server, form.cleaned_data["address"], form.cleaned_data["ptr"], request.user
        )
    except ValidationError as exc:
        if "ip" in exc.message_dict:  # not the form's own address: a request made by hand
            raise Http404(_("This server has no such address.")) from None
        for error in exc.messages:
            messages.error(request, error)
        return redirect("server-detail", pk=server.pk)
    except actions.ActionError as exc:
        messages.error(request, exc.message)
        return redirect("server-detail", pk=server.pk)
    address, ptr = row.address, row.ptr
    if ptr:
        messages.success(
            request,
            _("The reverse DNS name of %(address)s is now %(ptr)s.") % {"address": address, "ptr": ptr},
        )
    else:
        messages.success(
            request, _("The reverse DNS name of %(address)s was cleared.") % {"address": address}
        )
    return redirect("server-detail", pk=server.pk)
