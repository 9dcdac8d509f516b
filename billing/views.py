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
        try:
            services.record_payment(account, confirmed.amount, confirmed.reference, method=gateway.name)
        except services.ReferenceTaken:
            # The reference is another customer's payment (a staff-recorded one, say): nothing is credited,
            # and the provider is told so instead of retrying a server error forever.
            return HttpResponse("reference already used by another payment", status=409)
        except services.BillingError as exc:
            return HttpResponseBadRequest(exc.message)
    return HttpResponse("ok")
