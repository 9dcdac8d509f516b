"""The payment providers' notifications (webhooks): `/billing/webhooks/<provider>/`.

A notification only says when to look. Its signature or token is checked (billing.providers), then the
provider's status API is asked what became of the checkout (billing.checkouts.refresh): nothing is credited
on the notification's word. The answers are small JSON bodies the provider only reads the status of:

- 404: no such provider is configured here;
- 403: not signed by the provider (nothing changes);
- 200: done, or a verified notification of a reference we do not know (the provider's dashboard test
  notification): the provider stops retrying;
- 503: the provider's status API could not be asked; the provider retries (and the periodic poll,
  billing.tasks.poll_checkouts, asks again too).
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import checkouts, providers

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, provider: str) -> JsonResponse:
    gateway = providers.get(provider)
    if gateway is None:
        log.info("notification for %s, which is not configured", provider)
        return JsonResponse({"status": "unknown provider"}, status=404)
    try:
        reference = gateway.verify_notification(request)
    except providers.InvalidSignature as exc:
        log.warning("notification refused from %s: %s", gateway.name, exc)
        return JsonResponse({"status": "invalid signature"}, status=403)
    checkout = checkouts.find(gateway.name, reference)
    if checkout is None:
        log.info("notification from %s for unknown reference %s: ignored", gateway.name, reference)
        return JsonResponse({"status": "unknown reference"})
    before = checkout.status
    try:
        checkout = checkouts.refresh(checkout)
    except providers.ProviderError as exc:
        log.warning("notification from %s for %s: could not ask: %s", gateway.name, reference, exc)
        return JsonResponse({"status": "retry later"}, status=503)
    log.info("notification from %s for %s: %s -> %s", gateway.name, reference, before, checkout.status)
    return JsonResponse({"status": checkout.status})
