"""Celery tasks: thin wrappers around panel.servers.operations and panel.servers.reconcile."""

import logging
import smtplib
import threading

from celery import shared_task
from celery.signals import worker_init, worker_ready
from django.conf import settings
from django.db import connection

from hypervisor import routing
from hypervisor.models import Host
from panel.backups import pruning, schedule
from panel.infrastructure import allocation_audit as audit
from panel.infrastructure import host_moves
from panel.mail import delivery_connection, from_data
from panel.models import Server
from panel.servers import firewall, leases, operations, reconcile, reverse_dns
from panel.usage import metering

log = logging.getLogger(__name__)


@worker_init.connect
def _worker_started(sender=None, **kwargs) -> None:
    """A new start of this worker: its leases get a new owner token (shared by its pool's processes)."""
    leases.worker_started(sender.hostname)


@worker_ready.connect
def _resume_orphans(sender=None, **kwargs) -> None:
    """Send again, without waiting for their leases to run out, the operations an earlier run of this worker
    held (it was killed or crashed); in a thread, since it waits a heartbeat to see which are orphans."""
    node = sender.hostname

    def resume() -> None:
        try:
            resumed = leases.resume_orphans(node)
            if resumed:
                log.warning("sent again %s operation(s) that an earlier run of %s held", resumed, node)
        except Exception:
            log.exception("could not resume the operations an earlier run of %s held", node)
        finally:
            connection.close()

    threading.Thread(target=resume, name="resume-orphans", daemon=True).start()


# max_retries=None on the task: waiting for a host's turn is retried for as long as it takes (retry()'s own
# max_retries=None means "the task's default", which would end the wait after three polls).
@shared_task(bind=True, acks_late=True, max_retries=None)
def run_operation(self, operation_id: str) -> None:
    try:
        operations.execute(operation_id)
    except operations.RetryLater as exc:
        raise self.retry(countdown=exc.countdown) from exc


@shared_task(acks_late=True)
def reap_stuck_operations() -> int:
    """Send again the operations whose lease ran out, then fail those past their deadline."""
    leases.resume_expired()
    return operations.reap_stuck_operations()


@shared_task(acks_late=True)
def reconcile_host(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id, state=Host.State.READY).first()
    if host is not None:
        reconcile.reconcile_host(host)


@shared_task
def reconcile_all_hosts() -> None:
    for host_id, region_id in Host.objects.filter(state=Host.State.READY).values_list("id", "region_id"):
        reconcile_host.apply_async([host_id], queue=routing.queue_for_region(region_id))


@shared_task
def audit_allocations() -> int:
    return len(audit.audit_allocations())


@shared_task(acks_late=True)
def meter_host(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id, state=Host.State.READY).first()
    if host is not None:
        metering.meter_host(host)


@shared_task
def meter_all_hosts() -> None:
    for host_id, region_id in Host.objects.filter(state=Host.State.READY).values_list("id", "region_id"):
        meter_host.apply_async([host_id], queue=routing.queue_for_region(region_id))


@shared_task
def rollup_usage() -> None:
    metering.rollup()


@shared_task(acks_late=True)
def enforce_transfer(server_id: str) -> None:
    """Re-check a server's transfer allowance (after staff added a traffic block)."""
    server = Server.objects.filter(pk=server_id).select_related("plan", "host").first()
    if server is not None and server.status != Server.Status.DELETED:
        metering.enforce(server)


@shared_task(acks_late=True)
def push_reverse_dns(address_id: int) -> None:
    """Publish (or withdraw) one address's PTR record at PowerDNS."""
    reverse_dns.push(address_id)


@shared_task
def sync_reverse_dns() -> int:
    """Push the PTR records still pending, and the failed ones again after a few minutes."""
    return reverse_dns.sync()


@shared_task(acks_late=True)
def apply_network_filter(server_id: str) -> bool:
    """Apply a server's network filter (anti-spoofing and firewall) on its host as it stands now."""
    return firewall.apply_pending(server_id)


@shared_task
def apply_pending_network_filters() -> int:
    """Send again the network filters still behind their last change (a lost message, a failed host)."""
    return firewall.resend_pending()


@shared_task
def run_due_backups() -> int:
    """Start the scheduled backups whose slot has come (panel.backups.schedule)."""
    return schedule.run_due_backups()


@shared_task
def prune_backups() -> int:
    """Mark the backups past their retention (or of deleted servers) to go, then remove those due from their
    targets (panel.backups.pruning)."""
    pruning.prune_all()
    return pruning.delete_due()


@shared_task(acks_late=True)
def advance_host_move(move_id: int) -> bool:
    """One step of a host's drain or evacuation (panel.infrastructure.host_moves)."""
    return host_moves.advance(move_id)


@shared_task
def advance_host_moves() -> int:
    """Step every running drain and evacuation, each on its host's region's queue."""
    moves = host_moves.running_moves()
    for move_id, region_id in moves:
        advance_host_move.apply_async([move_id], queue=routing.queue_for_region(region_id))
    return len(moves)


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver_mail(self, messages: list[dict]) -> int:
    """Send queued mails one by one over one connection. When the mail server fails for a while (a
    connection error, a 4xx answer), the task is tried again later with the messages not sent yet, backing
    off up to MAIL_RETRY_MAX_SECONDS, and gives up after MAIL_RETRY_LIMIT tries. A message the server
    refuses for good (a 5xx answer, refused recipients) is logged and skipped. Delivery is at least once:
    a worker killed mid-way, or a server that drops the line after accepting, can repeat a message."""
    done = 0  # messages sent or refused for good
    try:
        with delivery_connection() as connection:
            for data in messages:
                try:
                    connection.send_messages([from_data(data)])
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
                    log.error("the mail server refused %r for good: %s", data.get("subject"), exc)
                except smtplib.SMTPResponseException as exc:
                    if exc.smtp_code < 500:
                        raise
                    log.error("the mail server refused %r for good: %s", data.get("subject"), exc)
                done += 1
    except (OSError, smtplib.SMTPException) as exc:
        raise _retry_mail(self, messages[done:], exc) from exc
    return done


def _retry_mail(task, remaining: list[dict], exc: Exception) -> Exception:
    """The retry of the messages not sent yet, or (after MAIL_RETRY_LIMIT tries) the error itself."""
    if task.request.retries >= settings.MAIL_RETRY_LIMIT:
        log.error("giving up on %s mails after %s tries: %s", len(remaining), task.request.retries, exc)
        return exc
    countdown = min(settings.MAIL_RETRY_SECONDS * 2**task.request.retries, settings.MAIL_RETRY_MAX_SECONDS)
    return task.retry(args=[remaining], countdown=countdown, exc=exc)
