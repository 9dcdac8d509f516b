"""The audit log page, for admins only: what staff and admins did (events with staff_action), newest
first, with their addresses."""

from django.core.paginator import Paginator
from django.shortcuts import render

from panel.models import ActivityEvent
from panel.roles import admin_required

AUDIT_EVENTS_PER_PAGE = 50


@admin_required
def audit_log(request):
    events = ActivityEvent.objects.filter(staff_action=True)
    event_type = request.GET.get("type", "")
    if event_type not in ActivityEvent.Type.values:
        event_type = ""
    if event_type:
        events = events.filter(type=event_type)
    actor = request.GET.get("actor", "").strip()
    if actor:
        events = events.filter(actor__email__icontains=actor)
    # The page's ids first, from the narrow partial index alone, then only those rows with their users:
    # joining before the sort would join every row of the newest second (a bulk action records thousands).
    page = Paginator(
        events.order_by("-at", "-id").values_list("id", flat=True), AUDIT_EVENTS_PER_PAGE
    ).get_page(request.GET.get("page"))
    page_ids = list(page.object_list)
    page_events = (
        list(
            ActivityEvent.objects.filter(pk__in=page_ids)
            .select_related("actor", "account")
            .order_by("-at", "-id")
        )
        if page_ids
        else []
    )
    return render(
        request,
        "panel/audit/log.html",
        {
            "page": page,
            "events": page_events,
            "types": ActivityEvent.Type.choices,
            "type": event_type,
            "actor": actor,
        },
    )
