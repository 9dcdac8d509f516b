"""API views of account security: tokens, the customer's activity log, the admins' audit log. Thin: token
changes go through `panel.accounts.api_tokens`."""

from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from panel.accounts import api_tokens
from panel.api import account_serializers
from panel.api.errors import error_response
from panel.api.permissions import IsPanelAdmin
from panel.models import ActivityEvent, ApiToken


class TokenList(generics.ListCreateAPIView):
    serializer_class = account_serializers.TokenSerializer

    def get_queryset(self):
        return ApiToken.objects.filter(user=self.request.user)

    @extend_schema(responses={201: account_serializers.NewTokenSerializer})
    def post(self, request, *args, **kwargs):
        serializer = account_serializers.TokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            token, raw = api_tokens.issue(request.user, **serializer.validated_data)
        except api_tokens.TooManyTokens as error:
            return error_response(422, error.message, "too_many_tokens")
        except api_tokens.TokenError as error:
            return error_response(
                400, f"{error.field}: {error.message}", "invalid", {error.field: [error.message]}
            )
        token.token = raw
        return Response(account_serializers.NewTokenSerializer(token).data, status=status.HTTP_201_CREATED)


class TokenDetail(generics.GenericAPIView):
    serializer_class = account_serializers.TokenSerializer

    def get_queryset(self):
        return ApiToken.objects.filter(user=self.request.user)

    @extend_schema(responses={204: None})
    def delete(self, request, pk: int):
        if not api_tokens.revoke(request.user, pk):
            return error_response(404, gettext("Not found."))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccountEventList(generics.ListAPIView):
    """The customer's own activity log, newest first."""

    serializer_class = account_serializers.AccountEventSerializer

    def get_queryset(self):
        return ActivityEvent.objects.filter(account=self.request.user).order_by("-at", "-id")


@extend_schema(
    parameters=[
        OpenApiParameter("type", str, description="Only events of this type."),
        OpenApiParameter("actor", str, description="Only events by the user with this email address."),
    ]
)
class AdminEventList(generics.ListAPIView):
    """The audit log of staff and admin actions, newest first (for admins only)."""

    permission_classes = [IsPanelAdmin]
    serializer_class = account_serializers.AuditEventSerializer

    def get_queryset(self):
        events = ActivityEvent.objects.filter(staff_action=True).select_related("actor")
        params = self.request.query_params
        if params.get("type"):
            events = events.filter(type=params["type"])
        if params.get("actor"):
            events = events.filter(actor__email__iexact=params["actor"].strip())
        return events.order_by("-at", "-id")
