"""What the server page says when the server's last action failed: what failed, the state the server is in
now and what the customer can do (panel.servers.operations keeps the error's own words for staff)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from panel.models import Operation, Server
from panel.servers.actions import HOST_DOWN_MESSAGE, HOST_DOWN_TEXT
from panel.servers.operations import GUEST_AGENT_TEXT
from panel.servers.states import Status, Task

STATE = {
    Status.RUNNING: gettext_lazy("Your server is running."),
    Status.STOPPED: gettext_lazy("Your server is stopped."),
    Status.SUSPENDED: gettext_lazy("Your server is suspended."),
    Status.ERROR: gettext_lazy("Your server is in an error state."),
    Status.RESCUE: gettext_lazy("Your server is in rescue mode."),
}
# How long the banner stays after a failed action, unless the server is left in error.
SHOWN_FOR = timedelta(days=3)
TRY_AGAIN = gettext_lazy("Try again in a few minutes. If it keeps failing, please contact support.")
ADVICE = {
    Task.CREATE: gettext_lazy(
        "Delete it (nothing is charged for a server that never ran), or rebuild it to try again."
    ),
    Task.REBUILD: gettext_lazy(
        "Its disk may be empty: rebuild it again, or contact support if it keeps failing."
    ),
    Task.DELETE: gettext_lazy("Delete it again; our staff have been told."),
    Task.RESIZE: gettext_lazy(
        "It keeps its previous plan and you are not charged for the change: any invoice for it was "
        "cancelled. Try again in a few minutes, or contact support if it keeps failing."
    ),
    Task.SNAPSHOT: gettext_lazy("No snapshot was taken. Try again, or contact support if it keeps failing."),
    Task.DELETE_SNAPSHOT: gettext_lazy(
        "The snapshot is still there. Try again, or contact support if it keeps failing."
    ),
    Task.SUSPEND: gettext_lazy("Try again, or find out from the staff detail below why the host refused."),
    Task.UNSUSPEND: gettext_lazy("Try again, or find out from the staff detail below why the host refused."),
    Task.RESCUE: gettext_lazy(
        "Try again in a few minutes. If the server shows rescue mode, leave rescue mode to boot it normally."
    ),
    Task.UNRESCUE: gettext_lazy(
        "It still runs the rescue system. Leave rescue mode again, or contact support if it keeps failing."
    ),
    Task.RESET_PASSWORD: gettext_lazy(
        "The password was not changed. Try again, or use rescue mode to set a new password."
    ),
    Task.ATTACH_ISO: gettext_lazy(
        "The ISO image was not attached. Try again in a few minutes, or contact support if it keeps failing."
    ),
    Task.DETACH_ISO: gettext_lazy(
        "The ISO image is still attached. Try again in a few minutes, or contact support if it keeps failing."
    ),
}
# A password reset the guest agent could not carry out: rescue mode is the way to a new password.
RESCUE_FOR_PASSWORD = gettext_lazy(
    "The QEMU guest agent is needed to reset the password from here. Use rescue mode instead: the server "
    "boots a rescue system with its disk attached, where you mount the disk and set a new password with "
    "chroot and passwd."
)


@dataclass
class FailureNotice:
    """The banner over the server page after a failed action."""

    operation: Operation
    title: str
    state: str
    advice: str
    # The banner offers to start rescue mode (a password reset the guest agent could not carry out).
    offer_rescue: bool = False


# The panel's own actions on a server (billing's, metering's, staff's): a failure is for staff to handle.
# A migration that failed left the server where it was, as it was: nothing for its owner to do.
PANEL_ACTIONS = (Task.SUSPEND, Task.UNSUSPEND, Task.MIGRATE)


def notice(server: Server, operations: list[Operation], *, for_staff: bool = False) -> FailureNotice | None:
    """The banner for the server's latest action when it failed (and nothing runs now); None otherwise.
    `operations` are the server's operations newest first, each with its `summary`
    (descriptions.describe_all)."""
    if server.task or not operations or operations[0].status != Operation.Status.FAILED:
        return None
    latest = operations[0]
    if latest.type in PANEL_ACTIONS and not for_staff:
        return None
    finished = latest.finished_at or latest.created_at
    if server.status != Status.ERROR and finished < timezone.now() - SHOWN_FOR:
        return None  # an old failure of a server that works: the activity list keeps it
    summary = getattr(latest, "summary", "") or latest.get_type_display()
    offer_rescue = False
    if latest.error == HOST_DOWN_TEXT:
        advice = str(HOST_DOWN_MESSAGE)
    elif latest.error == GUEST_AGENT_TEXT:
        advice, offer_rescue = str(RESCUE_FOR_PASSWORD), True
    else:
        advice = str(ADVICE.get(latest.type, TRY_AGAIN))
    return FailureNotice(
        operation=latest,
        title=_("%(action)s failed.") % {"action": summary},
        state=str(STATE.get(server.status, "")),
        advice=advice,
        offer_rescue=offer_rescue,
    )
