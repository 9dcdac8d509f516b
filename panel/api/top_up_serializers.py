"""API v1 serializers of top-ups: a checkout at a payment provider (billing.checkouts) that adds credit, or
pays what an open invoice still needs."""

from __future__ import annotations

from decimal import Decimal

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from billing import checkouts
from billing.errors import BillingError
from billing.models import Checkout
from billing.money import quantize
from panel.api.serializers import money


class TopUpCreateSerializer(serializers.Serializer):
    """What a customer asks for. `provider` must be one of those configured (the context's `providers`,
    names in the order they are offered); without it, the first. With `invoice`, the checkout pays what
    that open invoice still needs and `amount` may be left out."""

    amount = serializers.DecimalField(
        max_digits=16, decimal_places=2, min_value=Decimal("0.01"), required=False,
        help_text=_("What to add to the balance, in the installation's currency (TOP_UP_MIN to TOP_UP_MAX)."),
    )  # fmt: skip
    provider = serializers.CharField(
        max_length=30, required=False, help_text=_("midtrans or xendit; by default the first configured.")
    )
    invoice = serializers.IntegerField(
        min_value=1, required=False, help_text=_("An open invoice's id: pay what it still needs.")
    )

    def validate_amount(self, value: Decimal) -> Decimal:
        if value != quantize(value):
            raise serializers.ValidationError(gettext("The amount is more precise than the currency allows."))
        return value

    def validate_provider(self, value: str) -> str:
        names = self.context.get("providers", [])
        if names and value not in names:
            raise serializers.ValidationError(
                gettext("Unknown payment provider; use one of: %(names)s.") % {"names": ", ".join(names)}
            )
        return value

    def validate(self, data: dict) -> dict:
        if "invoice" in data:
            return data
        if "amount" not in data:
            raise serializers.ValidationError({"amount": [gettext("Give the amount to add.")]})
        try:
            checkouts.check_top_up_amount(data["amount"])
        except BillingError as exc:
            raise serializers.ValidationError({"amount": [exc.message]}) from exc
        return data


class TopUpSerializer(serializers.ModelSerializer):
    amount = serializers.SerializerMethodField()
    status = serializers.ChoiceField(
        choices=Checkout.Status.choices, help_text=_("pending, paid, expired or failed")
    )
    checkout_url = serializers.CharField(help_text=_("The provider's payment page to send the payer to."))
    invoice = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = Checkout
        fields = [
            "id",
            "amount",
            "currency",
            "status",
            "checkout_url",
            "provider",
            "invoice",
            "created_at",
            "expires_at",
            "paid_at",
        ]
        read_only_fields = fields

    def get_amount(self, checkout: Checkout) -> str:
        return money(checkout.amount)
