"""Asking before an action that is hard to undo (power off, revoking a token, deleting an SSH key).

In the browser panel.js asks (`data-confirm`, or htmx's `hx-confirm`) and fills in the form's `confirmed`
field; without JavaScript the view answers with a page that asks the question and posts the same form again,
confirmed. Either way nothing happens on one click."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

FIELD = "confirmed"


def is_confirmed(request: HttpRequest) -> bool:
    return request.POST.get(FIELD) == "yes"


def ask(
    request: HttpRequest, *, title: str, question: str, confirm_label: str, cancel_url: str
) -> HttpResponse:
    """The page that asks: the form's own fields are posted again to the same URL, with `confirmed`."""
    fields = [
        (name, value)
        for name, values in request.POST.lists()
        if name not in ("csrfmiddlewaretoken", FIELD)
        for value in values
    ]
    return render(
        request,
        "panel/confirm.html",
        {
            "title": title,
            "question": question,
            "confirm_label": confirm_label,
            "cancel_url": cancel_url,
            "action_url": request.get_full_path(),
            "fields": fields,
            # The page answers a POST: switching the language goes back to the page the question came from.
            "language_next": cancel_url,
        },
    )
