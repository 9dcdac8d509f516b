"""API v1: top-ups (`account/top-ups/`), checkouts at a payment provider that add credit to the caller's own
account or pay one of its open invoices. Every caller, staff too, acts on their own account only; another
account's top-up is a 404. Creating one asks the provider for its payment page (billing.checkouts.start);
its status changes when the provider confirms the payment."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from billing import checkout_views, checkouts, providers
from billing.errors import BillingError
from billing.invoices import amount_due
from billing.ledger import with_withheld
from billing.models import Checkout, Invoice
from panel.api import top_up_serializers
from panel.api.errors import error_response


def own_checkouts(user) -> QuerySet[Checkout]:
    return Checkout.objects.filter(account=user).order_by("-created_at", "-id")


class TopUpList(generics.ListAPIView):
    """The caller's top-ups, newest first (also those paying an invoice). POST starts one: 201 with the
    payment page in `checkout_url`; paying an invoice whose checkout with that provider is still pending
    answers 200 with that one."""

    serializer_class = top_up_serializers.TopUpSerializer

    def get_queryset(self):
        return own_checkouts(self.request.user)

    @extend_schema(
        request=top_up_serializers.TopUpCreateSerializer,
        responses={
            201: top_up_serializers.TopUpSerializer,
            200: top_up_serializers.TopUpSerializer,
            400: OpenApiResponse(description="a malformed amount, an unknown provider, no such invoice"),
            422: OpenApiResponse(
                description="no_payment_provider (pay by bank transfer), provider_unavailable (the provider "
                "refused or could not be reached; nothing was charged), or the invoice is not open"
            ),
        },
    )
    def post(self, request):
        available = providers.available()
        data = top_up_serializers.TopUpCreateSerializer(
            data=request.data, context={"providers": [provider.name for provider in available]}
        )
        data.is_valid(raise_exception=True)
        if not available:
            return error_response(
                422,
                _("Online payment is not available here: please pay by bank transfer."),
                "no_payment_provider",
            )
        values = data.validated_data
        invoice = None
        if "invoice" in values:
            invoice = (
                with_withheld(Invoice.objects.filter(account=request.user, pk=values["invoice"]))
                .exclude(status=Invoice.Status.DRAFT)
                .first()
            )
            if invoice is None:
                return _field_error("invoice", _("No such invoice."))
            due = amount_due(invoice)
            if "amount" in values and invoice.status == Invoice.Status.OPEN and values["amount"] != due:
                return _field_error(
                    "amount",
                    _("An invoice is paid in full: leave the amount out, or give %(amount)s.")
                    % {"amount": due},
                )
        started = timezone.now()
        try:
            checkout = checkouts.start(
                request.user,
                values.get("provider") or available[0].name,
                amount=None if invoice else values["amount"],
                invoice=invoice,
                return_url=checkout_views.return_url(request),
            )
        except checkouts.ProviderUnavailable as exc:
            return error_response(422, exc.message, "provider_unavailable")
        except BillingError as exc:  # the invoice is not open, or nothing is left to pay on it
            return error_response(422, exc.message)
        body = top_up_serializers.TopUpSerializer(checkout).data
        reused = checkout.created_at < started
        return Response(body, status=status.HTTP_200_OK if reused else status.HTTP_201_CREATED)


def _field_error(field: str, message: str) -> Response:
    return error_response(400, f"{field}: {message}", "invalid", {field: [message]})


class TopUpDetail(generics.RetrieveAPIView):
    serializer_class = top_up_serializers.TopUpSerializer

    def get_queryset(self):
        return own_checkouts(self.request.user)
