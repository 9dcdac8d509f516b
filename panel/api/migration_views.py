"""POST admin/servers/{id}/migrate/: admins move a server to another host of its region (live when it runs,
cold otherwise; panel.servers.migration). Thin: the service checks and claims, the worker moves it."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from hypervisor.models import Host
from panel.api.permissions import IsAdminOrReadOnlyStaff
from panel.api.serializers import ActionSerializer, MigrationLimitsSerializer
from panel.models import Operation, Server
from panel.servers import migration
from panel.servers.actions import Unprocessable


class MigrateSerializer(MigrationLimitsSerializer):
    host = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="the target host's id; left out (or null): placement picks another host of the region",
    )


class MigrationProgressSerializer(serializers.Serializer):
    percent = serializers.IntegerField()
    bytes_done = serializers.IntegerField()
    bytes_total = serializers.IntegerField()
    bytes_remaining = serializers.IntegerField()


class MigrationActionSerializer(ActionSerializer):
    """The action, as customers' actions are shown, with how far the copy is and how the server moves."""

    progress = serializers.SerializerMethodField(help_text="{} until the copy has begun")
    mode = serializers.SerializerMethodField(help_text="live (the server runs meanwhile) or cold")

    class Meta(ActionSerializer.Meta):
        fields = [*ActionSerializer.Meta.fields, "mode"]

    @extend_schema_field(MigrationProgressSerializer)
    def get_progress(self, operation: Operation) -> dict:
        return migration.progress_of(operation)

    def get_mode(self, operation: Operation) -> str:
        return migration.mode_of(operation)


class AdminServerMigrate(APIView):
    """Admins only: staff get 403 (as for host changes), customers 403 on every admin/ path."""

    permission_classes = [IsAdminOrReadOnlyStaff]

    @extend_schema(request=MigrateSerializer, responses={202: MigrationActionSerializer})
    def post(self, request, pk):
        server = get_object_or_404(Server.objects.select_related("host", "region"), pk=pk)
        data = MigrateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        host = None
        if values.get("host") is not None:
            host = Host.objects.filter(pk=values["host"]).first()
            if host is None:
                raise Unprocessable(_("Unknown host %(id)s.") % {"id": values["host"]})
        operation = migration.migrate_server(
            server,
            request.user,
            host=host,
            max_bandwidth_mib=values.get("max_bandwidth_mib"),
            timeout_seconds=values.get("timeout_seconds"),
        )
        answer = MigrationActionSerializer(operation, context={"request": request}).data
        return Response(answer, status=status.HTTP_202_ACCEPTED)
