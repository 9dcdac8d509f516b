"""The provider webhook: thin; verification is the provider's, recording is billing.services'."""

from django.contrib.auth import get_user_model
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseNotFound
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import providers, services


@csrf_exempt
@require_POST
def webhook(request, provider: str):
    gateway = providers.get(provider)
    if gateway is None:
        return HttpResponseNotFound("unknown provider")
    try:
        confirmed = gateway.verify_webhook(request)
    except providers.InvalidSignature:
        return HttpResponseBadRequest("invalid signature")
    if confirmed is not None:
        account = get_user_model().objects.filter(pk=confirmed.account_id).first()
        if account is None:
            return HttpResponseBadRequest("unknown account")
        services.record_payment(account, confirmed.amount, confirmed.reference, method=gateway.name)
    return HttpResponse("ok")
