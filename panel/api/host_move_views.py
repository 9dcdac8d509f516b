"""API v1: an admin drains a host (its servers migrated away, the host left in maintenance) or evacuates a
host that is down (its servers rebuilt elsewhere). Both answer 202 with the host, whose `move` shows the
progress; 409 when a move of the host runs already (or the host's state calls for the other one)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from hypervisor.models import Host
from panel.api.permissions import IsPanelAdmin
from panel.api.serializers import HostSerializer, MigrationLimitsSerializer
from panel.infrastructure import host_moves


def _host(pk: int) -> Host:
    return get_object_or_404(Host.objects.select_related("region"), pk=pk)


def _answer(pk: int) -> Response:
    return Response(HostSerializer(_host(pk)).data, status=status.HTTP_202_ACCEPTED)


class AdminHostDrain(APIView):
    permission_classes = [IsPanelAdmin]

    @extend_schema(request=MigrationLimitsSerializer, responses={202: HostSerializer})
    def post(self, request, pk: int) -> Response:
        host = _host(pk)
        data = MigrationLimitsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        host_moves.start_drain(host, request.user, **data.validated_data)
        return _answer(pk)


class AdminHostEvacuate(APIView):
    permission_classes = [IsPanelAdmin]

    @extend_schema(request=None, responses={202: HostSerializer})
    def post(self, request, pk: int) -> Response:
        host_moves.start_evacuation(_host(pk), request.user)
        return _answer(pk)
