"""API v1: a server's backup policy (`GET, PUT servers/{id}/backup-policy/`) and its backups
(`GET servers/{id}/backups/`). Backups are taken and restored through the actions endpoint (`backup`,
`restore_backup`); the policy's rules are panel.backups.policies'."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.money import currency
from panel.api.views import customer_servers
from panel.backups import policies, pricing
from panel.models import Backup, BackupPolicy, Server


class BackupPolicySerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    schedule = serializers.ChoiceField(choices=BackupPolicy.Schedule.choices)
    retention = serializers.IntegerField(help_text="how many backups are kept (the newest)")
    price_monthly = serializers.CharField(
        help_text="what the backups cost a month, a decimal string (a share of the plan's monthly price)"
    )
    currency = serializers.CharField()
    next_run_at = serializers.DateTimeField(
        allow_null=True, help_text="when the next scheduled backup starts"
    )
    retention_max = serializers.IntegerField(help_text="the most backups a policy may keep")
    available = serializers.BooleanField(help_text="whether backups can be turned on in the server's region")


class BackupPolicyUpdateSerializer(serializers.Serializer):
    """The body; a field left out keeps its value. Ranges are checked by panel.backups.policies, which
    names the field in `fields`."""

    enabled = serializers.BooleanField(required=False)
    schedule = serializers.CharField(required=False, help_text="daily or weekly")
    retention = serializers.IntegerField(required=False, help_text="1 to retention_max")


def policy_body(server: Server, policy: BackupPolicy) -> dict:
    return BackupPolicySerializer(
        {
            "enabled": policy.enabled,
            "schedule": policy.schedule,
            "retention": policy.retention,
            "price_monthly": str(pricing.price_monthly(server)),
            "currency": currency(),
            "next_run_at": policy.next_run_at,
            "retention_max": settings.BACKUP_RETENTION_MAX,
            "available": policies.available(server),
        }
    ).data


class BackupSerializer(serializers.ModelSerializer):
    class Meta:
        model = Backup
        fields = ["id", "created_at", "status", "size_bytes", "kind", "completed_at", "trigger"]
        read_only_fields = fields


def _server(request, pk) -> Server:
    return get_object_or_404(customer_servers(request.user).select_related("region__backup_target"), pk=pk)


class ServerBackupPolicy(APIView):
    """The server's backup policy: daily or weekly backups at the server's own minute of the backup hour,
    keeping the newest `retention`. Enabled, it is billed with the server's subscription at
    `price_monthly` and counts `retention` backups towards the `backups` quota."""

    @extend_schema(operation_id="servers_backup_policy_retrieve", responses={200: BackupPolicySerializer})
    def get(self, request, pk: uuid.UUID):
        server = _server(request, pk)
        return Response(policy_body(server, policies.policy_of(server)))

    @extend_schema(
        operation_id="servers_backup_policy_update",
        request=BackupPolicyUpdateSerializer,
        responses={
            200: BackupPolicySerializer,
            400: OpenApiResponse(description="a value is invalid (`fields` names it)"),
            409: OpenApiResponse(description="the server is deleted or being deleted"),
            422: OpenApiResponse(
                description="backups are not available in the region, over the `backups` quota, or not "
                "enough credit (prepaid)"
            ),
        },
    )
    def put(self, request, pk: uuid.UUID):
        server = _server(request, pk)
        body = BackupPolicyUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        current = policies.policy_of(server)
        policy = policies.update_policy(
            server,
            request.user,
            enabled=values.get("enabled", current.enabled),
            schedule=values.get("schedule", current.schedule),
            retention=values.get("retention", current.retention),
        )
        return Response(policy_body(server, policy))


class ServerBackupList(generics.ListAPIView):
    """The server's backups, newest first (those being removed are not listed)."""

    serializer_class = BackupSerializer

    def get_queryset(self):
        server = _server(self.request, self.kwargs["pk"])
        return Backup.objects.filter(server=server, delete_after__isnull=True).order_by("-created_at", "-pk")

    @extend_schema(operation_id="servers_backups_list")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
