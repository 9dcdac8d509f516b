"""API v1: an admin drains a host (its servers migrated away, the host left in maintenance) or evacuates a
host that is down (its servers rebuilt elsewhere). Both answer 202 with the host, whose `move` shows the
progress; 409 when a move of the host runs already (or the host's state calls for the other one)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from hypervisor.models import Host
from panel.api.permissions import IsPanelAdmin
from panel.api.serializers import HostSerializer
from panel.infrastructure import host_moves


class DrainSerializer(serializers.Serializer):
    max_bandwidth_mib = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=host_moves.MAX_BANDWIDTH_MIB,
        help_text="each migration's bandwidth cap in MiB/s (0: none); the panel's default when left out",
    )
    timeout_seconds = serializers.IntegerField(
        required=False,
        min_value=host_moves.MIN_TIMEOUT_SECONDS,
        max_value=host_moves.MAX_TIMEOUT_SECONDS,
        help_text="how long each live migration may take before it is aborted (the server stays where it "
        "was); the panel's default when left out",
    )


def _host(pk: int) -> Host:
    return get_object_or_404(Host.objects.select_related("region"), pk=pk)


def _answer(pk: int) -> Response:
    return Response(HostSerializer(_host(pk)).data, status=status.HTTP_202_ACCEPTED)


class AdminHostDrain(APIView):
    permission_classes = [IsPanelAdmin]

    @extend_schema(request=DrainSerializer, responses={202: HostSerializer})
    def post(self, request, pk: int) -> Response:
        host = _host(pk)
        data = DrainSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        host_moves.start_drain(host, request.user, **data.validated_data)
        return _answer(pk)


class AdminHostEvacuate(APIView):
    permission_classes = [IsPanelAdmin]

    @extend_schema(request=None, responses={202: HostSerializer})
    def post(self, request, pk: int) -> Response:
        host_moves.start_evacuation(_host(pk), request.user)
        return _answer(pk)
