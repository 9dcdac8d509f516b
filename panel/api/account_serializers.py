"""Serializers of the account-security API: tokens and the activity log."""

from rest_framework import serializers

from panel.activity.log import ip_shown_to_account
from panel.models import ActivityEvent, ApiToken


class TokenSerializer(serializers.ModelSerializer):
    scope = serializers.ChoiceField(choices=ApiToken.Scope.choices, default=ApiToken.Scope.WRITE)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "scope", "created_at", "expires_at", "last_used_at"]
        read_only_fields = ["id", "created_at", "last_used_at"]


class NewTokenSerializer(TokenSerializer):
    """The answer to POST tokens/: the token's fields and, this once, the secret."""

    token = serializers.CharField(read_only=True)

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]


class AccountEventSerializer(serializers.ModelSerializer):
    summary = serializers.CharField(source="text", read_only=True)
    # The account holder's own addresses only: null for what staff and admins did.
    ip = serializers.SerializerMethodField()

    class Meta:
        model = ActivityEvent
        fields = ["id", "at", "type", "ip", "summary"]
        read_only_fields = fields

    def get_ip(self, event: ActivityEvent) -> str | None:
        return ip_shown_to_account(event)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    summary = serializers.CharField(source="text", read_only=True)

    class Meta:
        model = ActivityEvent
        fields = ["id", "at", "actor", "type", "target", "summary"]
        read_only_fields = fields

    def get_actor(self, event: ActivityEvent) -> str | None:
        return event.actor.email if event.actor_id else None
