"""The panel's answers to billing's signals: suspend, unsuspend and delete the servers of a
subscription (billing knows them only by reference)."""

from __future__ import annotations

import logging

from django.dispatch import receiver
from django.utils.translation import gettext as _

from billing import signals

from . import actions
from .models import Server

log = logging.getLogger(__name__)


def _servers(references):
    return Server.objects.filter(id__in=list(references)).select_related("host")


@receiver(signals.account_suspended)
def suspend_for_billing(sender, account, references, **kwargs) -> None:
    for server in _servers(references).filter(status__in=[Server.Status.RUNNING, Server.Status.STOPPED]):
        try:
            reason = _("Suspended: an invoice is overdue. Pay it to resume the server.")
            actions.suspend_server(server, reason, by="billing")
        except actions.ActionError as exc:
            log.warning("could not suspend %s for billing now: %s", server.id, exc.message)


@receiver(signals.account_unsuspended)
def unsuspend_after_payment(sender, account, references, **kwargs) -> None:
    for server in _servers(references).filter(status=Server.Status.SUSPENDED, suspended_by="billing"):
        try:
            actions.unsuspend_server(server)
        except actions.ActionError as exc:
            log.warning("could not unsuspend %s after payment now: %s", server.id, exc.message)


@receiver(signals.subscriptions_terminated)
def delete_terminated(sender, account, references, **kwargs) -> None:
    for server in _servers(references).exclude(status__in=[Server.Status.DELETED, Server.Status.DELETING]):
        try:
            actions.delete_server(server, None)
        except actions.ActionError as exc:
            log.warning("could not delete terminated %s now: %s", server.id, exc.message)
