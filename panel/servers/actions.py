"""Server actions as services: each owns its transaction, the state check and the enqueue.

Starting an action is a compare-and-swap on the server row (docs/architecture.md): it succeeds only when no
task is in flight and the status allows the action; otherwise the caller gets a Conflict (HTTP 409)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from billing import errors as billing_errors
from billing import subscriptions
from billing.models import Plan
from hypervisor import images, ipam, macs, routing
from hypervisor.cloudinit import hash_password
from hypervisor.models import Allocation, BackupTarget, Host, Image, Region
from hypervisor.placement import NoCapacity, Resources
from panel import dispatch, raw_rows
from panel.accounts import quotas
from panel.activity import log as activity
from panel.models import ActivityEvent, Backup, BackupPolicy, Operation, Server, Snapshot, SSHKey, User
from panel.servers import catalog, operation_states, passwords, resize_quotes, states
from panel.servers.locks import LockOrder
from panel.servers.states import Status, SuspendedBy, Task
from panel.servers.validators import validate_hostname

log = logging.getLogger(__name__)


class ActionError(Exception):
    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Conflict(ActionError):
    """The server's state does not allow the action now (HTTP 409)."""

    code = "conflict"


class Forbidden(ActionError):
    """The account may not do this (HTTP 403)."""

    code = "forbidden"


class EmailUnverified(Forbidden):
    code = "email_unverified"


class Unprocessable(ActionError):
    """A valid request the panel cannot satisfy (HTTP 422)."""

    code = "unprocessable"


class OutOfCapacity(Unprocessable):
    code = "out_of_capacity"


class OutOfAddresses(Unprocessable):
    code = "out_of_addresses"


class OverQuota(Unprocessable):
    code = "over_quota"


class InsufficientCredit(Unprocessable):
    code = "insufficient_credit"


def _check_quota(locks: LockOrder, user_id: int, more: dict[str, int]) -> None:
    """Lock the customer's row (reading their quota with it), then compare usage plus `more` with it."""
    user = locks.customer(user_id)
    try:
        quotas.check(user, more)
    except quotas.QuotaExceeded as exc:
        raise OverQuota(exc.message) from exc


# The English text (how operations store it) and the message translated when shown.
HOST_DOWN_TEXT = gettext_noop(
    "The host of this server is not answering; actions are paused until it is back. Please try again later."
)
HOST_DOWN_MESSAGE = gettext_lazy(HOST_DOWN_TEXT)


# Actions customers start from the actions endpoint (delete has its own).
POWER_ACTIONS = (Task.START, Task.SHUTDOWN, Task.POWER_OFF, Task.REBOOT)
CUSTOMER_ACTIONS = (
    *POWER_ACTIONS,
    Task.RESIZE,
    Task.REBUILD,
    Task.SNAPSHOT,
    Task.RESTORE,
    Task.DELETE_SNAPSHOT,
    Task.ATTACH_ISO,
    Task.DETACH_ISO,
    Task.RESCUE,
    Task.UNRESCUE,
    Task.RESET_PASSWORD,
    Task.BACKUP,
    Task.RESTORE_BACKUP,
)
# Actions whose answer carries a one-time root password, shown once (panel.servers.passwords).
PASSWORD_ACTIONS = (Task.RESCUE, Task.RESET_PASSWORD)


def allowed_actions(server: Server) -> list[str]:
    """The actions the server's current state allows (for showing buttons)."""
    if server.task:
        return []
    return [action for action, rule in states.ACTIONS.items() if server.status in rule.allowed_from]


def order_server(
    user: User,
    *,
    name: str,
    plan: Plan,
    image: Image | None = None,
    region: Region,
    ssh_keys: Iterable[SSHKey] = (),
    user_data: str = "",
    password: str = "",
    backup: Backup | None = None,
) -> Server:
    """Create a server and its create operation in one transaction, placing and claiming capacity at once.
    With a `backup` (one of the customer's, instead of an image) the new server's disk is that backup's:
    the server gets the backed-up server's image for its records, and the plan's disk must hold the backup.

    The plan, image and region are read again in the transaction (with the customer's lock, in the same
    statement) and the server is made of them as they are then: `plan`, `image` and `region` name them
    (the API validates them against a copy that may be seconds old, panel.servers.order_catalogue).

    Raises OutOfCapacity (nothing is created) when no host in the region can take the plan.
    """
    if not user.email_verified:
        raise EmailUnverified(
            _(
                "Please verify your email address before ordering: follow the link we sent you, "
                "or ask for a new one."
            )
        )
    name = validate_hostname(name)
    if backup is None and image is None:
        raise Unprocessable(_("Choose an image or a backup to make the server from."))
    keys = list(ssh_keys)
    if any(key.owner_id != user.pk for key in keys):
        raise Unprocessable(_("Unknown SSH key."))
    with transaction.atomic():
        locks = LockOrder()
        # The customer's row lock serialises their orders: quotas (and credit) are counted one by one.
        rows = locks.customer_for_order(
            user.pk, plan.slug, image.slug if backup is None else None, region.slug
        )
        plan = _on_sale(rows.plan, plan)
        if backup is not None:
            image = _image_of_backup(user, backup, plan)
        else:
            image = _orderable_image(rows.image, image)
        region = _open_region(rows.region, region)
        if backup is None:
            _check_image_fits(image, plan.disk_gib)
        _check_quota(
            locks,
            user.pk,
            {"servers": 1, "vcpus": plan.vcpus, "memory_mib": plan.memory_mib, "disk_gib": plan.disk_gib},
        )
        if settings.BILLING_ORDER_POLICY == "prepaid":
            try:
                subscriptions.require_credit(user, plan)
            except billing_errors.InsufficientCredit as exc:
                raise InsufficientCredit(exc.message) from exc
        server = Server(
            name=name,
            owner=user,
            plan=plan,
            image=image,
            region=region,
            vcpus=plan.vcpus,
            memory_mib=plan.memory_mib,
            disk_gib=plan.disk_gib,
            ssh_keys=[key.public_key for key in keys],
            user_data=user_data,
            password_hash=hash_password(password) if password else "",
            status=Status.PENDING,
            task=Task.CREATE,
        )
        # The lock order (panel.servers.locks) keeps the contended locks short: the host's row is locked by
        # the claim, the address is taken without waiting, and the invoice number's row (the one lock every
        # order shares) is taken last, a few statements before the commit. An order that cannot be placed
        # never holds an address meanwhile.
        need = Resources(server.vcpus, server.memory_mib, server.disk_gib)
        try:
            server.host = locks.claim(server.id, region, need)
        except NoCapacity as exc:
            raise OutOfCapacity(str(exc)) from exc
        try:
            server.__dict__["ip_addresses"] = locks.addresses(region, server.id)  # what the answer shows
        except ipam.NoAddress as exc:
            raise OutOfAddresses(str(exc)) from exc
        _insert_with_unique_mac(server)
        params = {"backup": backup.pk} if backup is not None else {}
        operation = Operation(
            server=server,
            type=Task.CREATE,
            requested_by=user,
            params=params,
            deadline=timezone.now() + operation_states.deadline(Task.CREATE, params),
        )
        raw_rows.insert(operation)
        locks.open_subscription(user, plan, str(server.id), server.name)
        activity.record(
            ActivityEvent.Type.SERVER_ORDERED,
            summary=gettext_noop("Ordered server %(name)s (%(plan)s, %(image)s, %(region)s)."),
            data={"name": server.name, "plan": plan.name, "image": image.name, "region": region.name},
            account=user,
            actor=user,
            target=f"server:{server.id}",
        )
        dispatch.operation_after_commit(
            operation.id,
            routing.queue_for_region(region.pk),
            operation_states.time_limit(Task.CREATE, operation.params),
        )
    return server


def _on_sale(now: Plan | None, asked: Plan) -> Plan:
    """The plan as it is now (`now`, read in the order's transaction), if it is on sale."""
    if now is None or not now.is_active:
        raise Unprocessable(_("The plan %(plan)s is not on sale.") % {"plan": asked.name})
    return now


def _orderable_image(now: Image | None, asked: Image) -> Image:
    """The image as it is now, if it is an active OS image."""
    if now is None or not now.is_active or now.purpose != Image.Purpose.OS:
        raise Unprocessable(_("The image %(image)s is not available.") % {"image": asked.name})
    return now


def _open_region(now: Region | None, asked: Region) -> Region:
    """The region as it is now, if it is open for orders."""
    if now is None or not now.is_active:
        raise Unprocessable(_("The region %(region)s is not open for orders.") % {"region": asked.name})
    return now


# What an order asks for: the order form's and the API serializer's field names (`image` or `backup`).
ORDER_FIELDS = ("name", "plan", "image", "region", "ssh_keys", "user_data", "password", "backup")


def order_from(user: User, data: Mapping) -> Server:
    """Order a server from a valid order form's or API serializer's data (both use ORDER_FIELDS)."""
    return order_server(user, **{field: data.get(field) for field in ORDER_FIELDS if field in data})


def _image_of_backup(user: User, backup: Backup, plan: Plan) -> Image:
    """The image a server made from `backup` records (the backed-up server's), once the backup is one the
    customer may make a server from and the plan's disk holds it."""
    if backup.server.owner_id != user.pk:
        raise Unprocessable(_("Unknown backup %(id)s.") % {"id": backup.pk})
    if not Backup.objects.usable().filter(pk=backup.pk).exists():
        raise Unprocessable(
            _("The backup %(id)s cannot be restored: it is not complete.") % {"id": backup.pk}
        )
    if plan.disk_gib < backup.disk_gib:
        raise Unprocessable(
            _("The backup needs a disk of at least %(size)s GiB; the plan %(plan)s has %(disk)s GiB.")
            % {"size": backup.disk_gib, "plan": plan.name, "disk": plan.disk_gib}
        )
    return backup.server.image


def _insert_with_unique_mac(server: Server, attempts: int = 5) -> None:
    """Insert the new server with a random MAC; the unique constraint decides: a draw that collides (rare:
    46 random bits) inserts nothing (ON CONFLICT (mac) DO NOTHING, so the order's transaction goes on
    without a savepoint) and is drawn again. Any other conflict (the server's id) raises."""
    mac_column = connection.ops.quote_name(Server._meta.get_field("mac").column)
    for _attempt in range(attempts):
        server.mac = macs.random_mac()
        if raw_rows.insert(server, on_conflict=f"({mac_column}) DO NOTHING"):
            return
    raise IntegrityError(f"no free MAC address in {attempts} random draws")


def request_action(
    server: Server,
    action: str,
    user: User | None,
    params: dict | None = None,
    prepare: Callable[[Server, LockOrder], None] | None = None,
    *,
    host_down_ok: bool = False,
    audited: bool = False,
) -> Operation:
    """Start `action` on the server if its state allows it; raise Conflict otherwise. `prepare` runs in the
    same transaction after the server was claimed (a resize claims capacity there); if it raises, nothing
    is changed. An action with a preparation locks its customer first (the lock order: customer, server,
    host, address, invoice numbering), since the preparation counts their quota or credit. Actions on a
    server whose host is down are refused, unless `host_down_ok` (an evacuation, made for exactly that).
    `audited`: the caller puts its own event on the admins' audit log (the owner's line stays off it)."""
    rule = states.ACTIONS.get(action)
    if rule is None:
        raise Unprocessable(_("Unknown action %(action)s.") % {"action": action})
    changes = {"task": action, "updated_at": timezone.now()}
    if rule.status_while_running:
        changes["status"] = rule.status_while_running
    with transaction.atomic():
        locks = LockOrder()
        if prepare is not None:
            locks.customer(server.owner_id)
        if not host_down_ok and Host.objects.filter(pk=server.host_id, state=Host.State.DOWN).exists():
            raise Conflict(str(HOST_DOWN_MESSAGE))
        locks.server()
        # The compare-and-swap is on the server row alone, so that Postgres re-checks it after a lock wait.
        started = Server.objects.filter(pk=server.pk, task__isnull=True, status__in=rule.allowed_from).update(
            **changes
        )
        if not started:
            current = Server.objects.get(pk=server.pk)
            if current.task:
                raise Conflict(
                    _(
                        "Another action (%(task)s) is in progress on this server; try again when it has "
                        "finished."
                    )
                    % {"task": Task(current.task).label if current.task in Task.values else current.task}
                )
            raise Conflict(
                _("Cannot %(action)s a server that is %(status)s.")
                % {"action": rule.label, "status": current.get_status_display().lower()}
            )
        if prepare is not None:
            prepare(server, locks)
        operation = Operation.objects.create(
            server=server,
            type=action,
            params=params or {},
            requested_by=user,
            deadline=timezone.now() + operation_states.deadline(action, params or {}),
        )
        _record_action(server, action, user, audited=audited)
        dispatch.operation_after_commit(
            operation.id,
            routing.queue_for_region(server.region_id),
            operation_states.time_limit(action, operation.params),
        )
    server.refresh_from_db()
    return operation


# What each action is called in the activity log (English, translated when shown).
ACTION_SUMMARIES = {
    Task.START: gettext_noop("Started server %(name)s."),
    Task.SHUTDOWN: gettext_noop("Shut down server %(name)s."),
    Task.POWER_OFF: gettext_noop("Powered off server %(name)s."),
    Task.REBOOT: gettext_noop("Rebooted server %(name)s."),
    Task.RESIZE: gettext_noop("Resized server %(name)s."),
    Task.REBUILD: gettext_noop("Rebuilt server %(name)s."),
    Task.SNAPSHOT: gettext_noop("Took a snapshot of server %(name)s."),
    Task.RESTORE: gettext_noop("Restored a snapshot of server %(name)s."),
    Task.DELETE_SNAPSHOT: gettext_noop("Deleted a snapshot of server %(name)s."),
    Task.SUSPEND: gettext_noop("Suspended server %(name)s."),
    Task.UNSUSPEND: gettext_noop("Unsuspended server %(name)s."),
    Task.ATTACH_ISO: gettext_noop("Attached an ISO image to server %(name)s."),
    Task.DETACH_ISO: gettext_noop("Detached the ISO image from server %(name)s."),
    Task.RESCUE: gettext_noop("Started rescue mode of server %(name)s."),
    Task.UNRESCUE: gettext_noop("Left rescue mode of server %(name)s."),
    Task.RESET_PASSWORD: gettext_noop("Reset the root password of server %(name)s."),
    Task.BACKUP: gettext_noop("Backed up server %(name)s."),
    Task.RESTORE_BACKUP: gettext_noop("Restored a backup of server %(name)s."),
    Task.DELETE: gettext_noop("Deleted server %(name)s."),
    # Staff's: its owner reads this line too (where it went is on the admins' audit log only).
    Task.MIGRATE: gettext_noop("Moved server %(name)s to another host for maintenance."),
    Task.EVACUATE: gettext_noop("Moved server %(name)s to new hardware after its host failed."),
}


def _record_action(server: Server, action: str, user: User | None, audited: bool = False) -> None:
    """The action in the owner's activity log; on the admins' audit log too when staff act on a customer's
    server (billing's and metering's own suspensions have no actor), unless the caller records its own
    event there (`audited`)."""
    staff_action = not audited and bool(
        user is not None and user.is_panel_staff and user.pk != server.owner_id
    )
    suspension = action in (Task.SUSPEND, Task.UNSUSPEND)
    activity.record(
        ActivityEvent.Type.SUSPENSION if suspension else ActivityEvent.Type.SERVER_ACTION,
        summary=ACTION_SUMMARIES.get(action, gettext_noop("Action %(type)s on server %(name)s.")),
        data={"name": server.name, "type": action},
        account=server.owner if server.owner_id else None,
        actor=user,
        target=f"server:{server.id}",
        staff_action=staff_action,
    )


def delete_server(server: Server, user: User | None) -> Operation:
    return request_action(server, Task.DELETE, user)


SNAPSHOT_NAME = re.compile(r"^[\w .:-]{1,64}$")


class QuoteExpired(Unprocessable):
    code = "quote_expired"


def resize_server(server: Server, plan: Plan, user: User | None, quote: str = "") -> Operation:
    """Change the server's plan. The capacity difference is claimed on its host at once (422 when the
    host cannot take it); the disk only grows. With a `quote` from the resize form, the change is charged
    as priced when the form was shown (panel.servers.resize_quotes), or refused when it is too old."""
    if not plan.is_active:
        raise Unprocessable(_("The plan %(plan)s is not on sale.") % {"plan": plan.name})
    if plan.pk == server.plan_id:
        raise Unprocessable(_("The server is on the plan %(plan)s already.") % {"plan": plan.name})
    if plan.disk_gib < server.disk_gib:
        raise Unprocessable(
            _("Disks only grow: %(plan)s has %(new)s GiB, the server has %(old)s GiB.")
            % {"plan": plan.name, "new": plan.disk_gib, "old": server.disk_gib}
        )

    def claim(current: Server, locks: LockOrder) -> None:
        _check_disk_can_grow(current, plan)
        _check_quota(
            locks,
            current.owner_id,
            {
                "vcpus": plan.vcpus - current.vcpus,
                "memory_mib": plan.memory_mib - current.memory_mib,
                "disk_gib": plan.disk_gib - current.disk_gib,
            },
        )
        try:
            locks.resize_claim(current.id, Resources(plan.vcpus, plan.memory_mib, plan.disk_gib))
        except NoCapacity as exc:
            raise OutOfCapacity(
                _("The server's host cannot take the plan %(plan)s now.") % {"plan": plan.name}
            ) from exc
        quoted = _quoted_amount(current, plan, quote) if quote else None
        # The subscription follows at once (an upgrade is invoiced pro rata); a failed resize undoes it.
        params["billing_undo"] = locks.change_plan(str(current.id), plan, quoted)

    params = {
        "plan": plan.slug,
        "from": {"plan": server.plan.slug, "vcpus": server.vcpus, "memory_mib": server.memory_mib,
                 "disk_gib": server.disk_gib},
    }  # fmt: skip
    return request_action(server, Task.RESIZE, user, params, prepare=claim)


def _quoted_amount(server: Server, plan: Plan, quote: str):
    """What the resize form showed the change to `plan` costs (or credits), when its quote still holds."""
    subscription = subscriptions.active_subscription(str(server.id))
    paid_through = subscription.paid_through if subscription else None
    try:
        amounts = resize_quotes.read(quote, server.id, server.plan.slug, paid_through).amounts
        if subscription is not None and subscription.cycle == subscription.Cycle.MONTHLY:
            return amounts[plan.slug]
        return None  # hourly: nothing is charged or credited now
    except (resize_quotes.QuoteExpired, KeyError) as exc:
        raise QuoteExpired(
            _(
                "The prices shown have changed since the page was loaded. Check the new prices and resize "
                "again."
            )
        ) from exc


def _check_disk_can_grow(server: Server, plan: Plan) -> None:
    """A disk made before qcow2 version 3 was used cannot grow while it has snapshots: refuse such a resize
    before anything changes, saying what to do (checked under the server's row lock, so a snapshot taken
    meanwhile is counted)."""
    if plan.disk_gib <= server.disk_gib or server.disk_grows_with_snapshots:
        return
    if Snapshot.objects.filter(server=server).exists():
        raise Unprocessable(
            _(
                "This server's disk cannot grow while it has snapshots. Delete its snapshots first, or "
                "choose a plan with the same disk size (%(size)s GiB). A rebuild gives the server a disk "
                "that can."
            )
            % {"size": server.disk_gib}
        )


def rebuild_server(server: Server, image: Image, user: User | None) -> Operation:
    """Reinstall the server from an image: a fresh disk, the same address and server. A server in error
    whose create failed holds nothing any more: the rebuild claims again what an order claims."""
    if not image.is_active or image.purpose != Image.Purpose.OS:
        raise Unprocessable(_("The image %(image)s is not available.") % {"image": image.name})
    _check_image_fits(image, server.disk_gib)
    params: dict = {"image": image.slug}

    def reclaim(current: Server, locks: LockOrder) -> None:
        if current.status == Status.ERROR:
            params.update(_claim_again(current, locks))

    return request_action(server, Task.REBUILD, user, params, prepare=reclaim)


def _claim_again(server: Server, locks: LockOrder) -> dict:
    """What a failed create gave back (capacity on a schedulable host, its addresses, the subscription),
    claimed again in the caller's transaction, in the one lock order: customer, host, address, invoice
    numbering, firewall row (new addresses raise the version of the server's network filter: defining the
    domain defines only the filters its host lacks, so the worker redefines them). Raises OutOfCapacity /
    OutOfAddresses / InsufficientCredit (the caller rolls back). Returns what was claimed, for a failed
    rebuild to give it back."""
    claimed: dict = {}
    owner = locks.customer(server.owner_id)
    region, plan = server.region, server.plan
    if not Allocation.objects.filter(consumer_uuid=server.id).exists():
        need = Resources(server.vcpus, server.memory_mib, server.disk_gib)
        try:
            host = locks.claim(server.id, region, need)
        except NoCapacity as exc:
            raise OutOfCapacity(
                _("The server cannot be rebuilt now: %(reason)s") % {"reason": str(exc)}
            ) from exc
        Server.objects.filter(pk=server.pk).update(host=host)
        server.host = host
        claimed["capacity"] = True
    server.forget_addresses()  # read anew, not as the caller last saw them
    if not server.ipv4_addresses or not server.ipv6_addresses:
        # A failed create gave its addresses back, or the region has had IPv6 since the server was made:
        # the rebuilt server gets what an order gets now.
        try:
            if not server.ipv4_addresses:
                taken = locks.addresses(region, server.id)
            else:
                taken = [address for address in [locks.ipv6_address(region, server.id)] if address]
        except ipam.NoAddress as exc:
            raise OutOfAddresses(
                _("The server cannot be rebuilt now: %(reason)s") % {"reason": str(exc)}
            ) from exc
        server.forget_addresses()
        if taken:
            claimed["address"] = True
    if subscriptions.active_subscription(str(server.id)) is None:
        if settings.BILLING_ORDER_POLICY == "prepaid":
            try:
                subscriptions.require_credit(owner, plan)
            except billing_errors.InsufficientCredit as exc:
                raise InsufficientCredit(exc.message) from exc
        locks.open_subscription(owner, plan, str(server.id), server.name)
        claimed["subscription"] = True
    if claimed.get("address"):
        locks.firewalls([server.id])
    return {"reclaimed": claimed} if claimed else {}


def snapshot_server(server: Server, name: str, user: User | None) -> Operation:
    name = (name or "").strip()
    if not SNAPSHOT_NAME.match(name):
        raise Unprocessable(_("A snapshot name has 1 to 64 letters, digits, spaces, dots, dashes or colons."))

    def check_limit(current: Server, locks: LockOrder) -> None:
        _check_quota(locks, current.owner_id, {"snapshots": 1})
        if quotas.snapshots_of_server(current) >= settings.SNAPSHOT_LIMIT:
            raise Unprocessable(
                _("A server keeps at most %(limit)s snapshots; delete one first.")
                % {"limit": settings.SNAPSHOT_LIMIT}
            )

    return request_action(server, Task.SNAPSHOT, user, {"name": name}, prepare=check_limit)


def _snapshot_of(server: Server, snapshot_id) -> Snapshot:
    snapshot = (
        Snapshot.objects.filter(server=server, pk=snapshot_id).first() if str(snapshot_id).isdigit() else None
    )
    if snapshot is None:
        raise Unprocessable(_("This server has no snapshot %(id)s.") % {"id": snapshot_id})
    return snapshot


def restore_snapshot(server: Server, snapshot_id, user: User | None) -> Operation:
    snapshot = _snapshot_of(server, snapshot_id)
    return request_action(server, Task.RESTORE, user, {"snapshot": snapshot.pk, "name": snapshot.name})


def delete_snapshot(server: Server, snapshot_id, user: User | None) -> Operation:
    snapshot = _snapshot_of(server, snapshot_id)
    return request_action(
        server, Task.DELETE_SNAPSHOT, user, {"snapshot": snapshot.pk, "name": snapshot.name}
    )


NO_BACKUP_TARGET = gettext_lazy("Backups are not available in this server's region.")


def backup_target_of(server: Server) -> BackupTarget:
    """The region's backup target for the server, refused (422) when the region has none, or when it is a
    storage pool on the server's own host: a backup never stays on the host it protects."""
    target = server.region.backup_target
    if target is None or not target.is_active:
        raise Unprocessable(str(NO_BACKUP_TARGET))
    if target.kind == BackupTarget.Kind.HOST_POOL and target.host_id == server.host_id:
        raise Unprocessable(
            _(
                "This server cannot be backed up now: its region keeps backups on the server's own host. "
                "Please contact support."
            )
        )
    return target


def backup_server(server: Server, user: User | None, trigger: str = Backup.Trigger.MANUAL) -> Operation:
    """Back the server up now (running or stopped; a running one keeps running): a Backup row, pending,
    and the operation that takes it (panel.backups.runs). A manual backup needs the server's backups
    enabled (they are paid for through its subscription) and counts within their retention: the oldest
    go when it has succeeded (panel.backups.pruning)."""
    target = backup_target_of(server)
    policy = BackupPolicy.objects.filter(server=server).first()
    if policy is None or not policy.enabled:
        raise Unprocessable(_("Enable backups for this server first."))
    with transaction.atomic():
        operation = request_action(server, Task.BACKUP, user, {"trigger": trigger})
        backup = Backup.objects.create(
            server=server,
            operation=operation,
            trigger=trigger,
            target=target,
            source_host_id=server.host_id,
            disk_gib=server.disk_gib,
        )
        Operation.objects.filter(pk=operation.pk).update(params={"trigger": trigger, "backup": backup.pk})
        operation.params = {"trigger": trigger, "backup": backup.pk}
    return operation


def restorable_backup(server: Server, backup_id) -> Backup:
    """One of the server's complete backups (422 otherwise), for restoring onto it."""
    backup = None
    if str(backup_id).isdigit():
        backup = Backup.objects.usable().filter(server=server, pk=backup_id).first()
    if backup is None:
        raise Unprocessable(_("This server has no complete backup %(id)s.") % {"id": backup_id})
    return backup


def restore_backup(server: Server, backup_id, user: User | None) -> Operation:
    """Replace the server's disk with a backup of it; its addresses and seed stay (the guest keeps its
    identity), and a running server is started again."""
    backup = restorable_backup(server, backup_id)
    return request_action(server, Task.RESTORE_BACKUP, user, {"backup": backup.pk})


def _check_image_fits(image: Image, disk_gib: int) -> None:
    if image.virtual_size_bytes > disk_gib * 1024**3:
        raise Unprocessable(
            _("The image %(image)s needs a disk of at least %(size)s GiB.")
            % {"image": image.name, "size": -(-image.virtual_size_bytes // 1024**3)}
        )


def perform(server: Server, action: str, user: User | None, params: dict) -> Operation:
    """Start a customer action by name with its parameters (the API's and the web's single entry)."""
    if action == Task.RESIZE:
        plan = Plan.objects.filter(slug=params.get("plan") or "").first()
        if plan is None:
            raise Unprocessable(_("Unknown plan %(plan)s.") % {"plan": params.get("plan")})
        return resize_server(server, plan, user, quote=str(params.get("quote") or ""))
    if action == Task.REBUILD:
        image = Image.objects.filter(slug=params.get("image") or "", purpose=Image.Purpose.OS).first()
        if image is None:
            raise Unprocessable(_("Unknown image %(image)s.") % {"image": params.get("image")})
        return rebuild_server(server, image, user)
    if action == Task.SNAPSHOT:
        return snapshot_server(server, params.get("name") or "", user)
    if action == Task.RESTORE:
        return restore_snapshot(server, params.get("snapshot"), user)
    if action == Task.DELETE_SNAPSHOT:
        return delete_snapshot(server, params.get("snapshot"), user)
    if action == Task.BACKUP:
        return backup_server(server, user)
    if action == Task.RESTORE_BACKUP:
        return restore_backup(server, params.get("backup"), user)
    if action == Task.ATTACH_ISO:
        return attach_iso(server, str(params.get("iso") or ""), user)
    if action == Task.DETACH_ISO:
        return detach_iso(server, user)
    if action == Task.RESCUE:
        return rescue_server(server, user)
    if action == Task.UNRESCUE:
        return unrescue_server(server, user)
    if action == Task.RESET_PASSWORD:
        return reset_password(server, user, str(params.get("password") or ""))
    if action in POWER_ACTIONS:
        return request_action(server, action, user)
    raise Unprocessable(_("Unknown action %(action)s.") % {"action": action})


def attach_iso(server: Server, slug: str, user: User | None) -> Operation:
    """Put an installer ISO in the server's CD-ROM drive and boot from it first (a running server is shut down
    and started again at once); another one attached is replaced. The worker copies the ISO to the
    server's host first. Server.iso records it when the attach has succeeded."""
    iso = catalog.active_isos().filter(slug=slug).first()
    if iso is None:
        raise Unprocessable(_("Unknown ISO image %(iso)s.") % {"iso": slug})
    return request_action(server, Task.ATTACH_ISO, user, {"iso": iso.slug, "name": iso.name})


def detach_iso(server: Server, user: User | None) -> Operation:
    """Take the ISO out: the server boots from its disk again (a running one is shut down and started again
    at once). Accepted with none recorded too: an attach that failed where its drive could not be put back
    may have left one in the drive, and detaching is how it goes (with none in the drive, nothing changes)."""
    return request_action(server, Task.DETACH_ISO, user)


NO_RESCUE_SYSTEM = gettext_lazy(
    "Rescue mode is not available: no rescue system has been set up. Please contact support."
)


def rescue_server(server: Server, user: User | None) -> Operation:
    """Boot the server (running or stopped) from the rescue system with its own disk attached as the second
    disk; root logs in on the console and over SSH with a one-time password, made now and returned once as
    the operation's `one_time_password` (the operation keeps it only encrypted, until its worker has used
    it). 422 when no rescue system is registered."""
    image = images.rescue_image()
    if image is None:
        raise Unprocessable(str(NO_RESCUE_SYSTEM))
    password = passwords.generate()
    operation = request_action(server, Task.RESCUE, user, {**passwords.sealed(password), "image": image.slug})
    operation.one_time_password = password
    return operation


def unrescue_server(server: Server, user: User | None) -> Operation:
    """Leave rescue mode: the rescue system is stopped and the server boots from its own disk again."""
    return request_action(server, Task.UNRESCUE, user)


def reset_password(server: Server, user: User | None, password: str = "") -> Operation:
    """Set a new root password in the running server through the QEMU guest agent: the customer's
    (checked: panel.servers.passwords.check) or, when none is given, one made now. Either is returned once as
    the operation's `one_time_password` and kept only encrypted until the worker has used it."""
    if password:
        try:
            passwords.check(password)
        except passwords.InvalidPassword as exc:
            raise Unprocessable(str(exc)) from exc
    else:
        password = passwords.generate()
    operation = request_action(server, Task.RESET_PASSWORD, user, passwords.sealed(password))
    operation.one_time_password = password
    return operation


def suspend_server(
    server: Server, reason: str, user: User | None = None, by: str = SuspendedBy.STAFF
) -> Operation:
    """Stop the server and refuse customers' actions until it is unsuspended. `by` (staff, billing,
    transfer) is recorded: billing lifts only its own suspensions."""
    return request_action(server, Task.SUSPEND, user, {"reason": reason, "by": by})


def unsuspend_server(server: Server, user: User | None = None) -> Operation:
    """Lift a suspension (billing's after a payment, metering's at a new period, or a staff member's). Staff
    cannot lift one on their own server, whoever suspended it (Forbidden)."""
    if user is not None and user.pk == server.owner_id:
        raise Forbidden(_("You cannot unsuspend your own server; ask another staff member."))
    return request_action(server, Task.UNSUSPEND, user)
