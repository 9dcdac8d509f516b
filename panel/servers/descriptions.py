"""What an operation did, in words, with its parameters ("Resize to Basic 2"): the activity lists and the
failure banner of the customer's and the staff's server pages."""

from __future__ import annotations

from django.utils.translation import gettext as _

from billing.models import Plan
from hypervisor.models import Image
from panel.models import Operation
from panel.servers.states import Task


def describe(operation: Operation, plan_names: dict[str, str], image_names: dict[str, str]) -> str:
    """What the operation did, in words, with its parameters ("Resize to Basic 2")."""
    params = operation.params or {}
    if operation.type == Task.RESIZE and params.get("plan"):
        return _("Resize to %(plan)s") % {"plan": plan_names.get(params["plan"], params["plan"])}
    if operation.type == Task.REBUILD and params.get("image"):
        return _("Rebuild with %(image)s") % {"image": image_names.get(params["image"], params["image"])}
    if operation.type == Task.SNAPSHOT and params.get("name"):
        return _("Snapshot “%(name)s”") % {"name": params["name"]}
    if operation.type == Task.RESTORE and params.get("name"):
        return _("Restore snapshot “%(name)s”") % {"name": params["name"]}
    if operation.type == Task.DELETE_SNAPSHOT and params.get("name"):
        return _("Delete snapshot “%(name)s”") % {"name": params["name"]}
    if operation.type == Task.ATTACH_ISO and params.get("name"):
        return _("Attach the ISO image “%(name)s”") % {"name": params["name"]}
    return operation.get_type_display()


def recent_operations(server, limit: int = 20) -> list[Operation]:
    """The server's latest operations, newest first, with who asked and their `summary`."""
    return describe_all(Operation.objects.filter(server=server).select_related("requested_by")[:limit])


def describe_all(operations) -> list[Operation]:
    """The operations as a list, each with its `summary`, naming plans and images with one query each."""
    operations = list(operations)
    kinds = {op.type for op in operations}
    plan_names = dict(Plan.objects.values_list("slug", "name")) if Task.RESIZE in kinds else {}
    image_names = dict(Image.objects.values_list("slug", "name")) if Task.REBUILD in kinds else {}
    for operation in operations:
        operation.summary = describe(operation, plan_names, image_names)
    return operations
