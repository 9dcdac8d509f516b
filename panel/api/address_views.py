"""A server's addresses in the API: every address of both families, and additional IPv4 addresses that the
customer adds, removes or moves to another of their servers in the region (panel.servers.addresses)."""

from __future__ import annotations

import ipaddress
import uuid

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from hypervisor.models import IPAddress
from panel.api.views import customer_servers
from panel.servers import addresses


def address_body(row: IPAddress) -> dict:
    instructions = addresses.guest_instructions(row) if row.role == IPAddress.Role.ADDITIONAL else None
    return {
        "ip": row.address,
        "family": row.family,
        "role": row.role,
        "network": row.assigned_network,
        "gateway": row.pool.gateway,
        "ptr": row.ptr,
        "configure": instructions,
    }


def _list(server) -> dict:
    rows = [address_body(row) for row in server.ip_addresses]
    return {"count": len(rows), "next": None, "previous": None, "results": rows}


class MoveSerializer(serializers.Serializer):
    server = serializers.UUIDField(help_text="the id of another of your servers in the same region")


class ServerAddressList(APIView):
    @extend_schema(operation_id="servers_addresses_list", responses={200: dict})
    def get(self, request, pk: uuid.UUID):
        server = get_object_or_404(customer_servers(request.user), pk=pk)
        return Response(_list(server))

    @extend_schema(request=None, responses={201: dict})
    def post(self, request, pk: uuid.UUID):
        """Add an additional IPv4 address (billed per month from now)."""
        server = get_object_or_404(customer_servers(request.user), pk=pk)
        row = addresses.add_address(server, request.user)
        row = IPAddress.objects.select_related("pool").get(pk=row.pk)
        return Response(address_body(row), status=status.HTTP_201_CREATED)


class ServerAddressDetail(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, pk: uuid.UUID, ip: str):
        server = get_object_or_404(customer_servers(request.user), pk=pk)
        return Response(address_body(_held_or_404(server, ip)))

    @extend_schema(responses={204: None})
    def delete(self, request, pk: uuid.UUID, ip: str):
        """Remove an additional address (it stops being billed)."""
        server = get_object_or_404(customer_servers(request.user), pk=pk)
        _held_or_404(server, ip)
        addresses.remove_address(server, ip, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServerAddressMove(APIView):
    @extend_schema(
        request=MoveSerializer,
        responses={200: inline_serializer("MovedAddress", {"ip": serializers.CharField()})},
    )
    def post(self, request, pk: uuid.UUID, ip: str):
        """Move an additional address to another of your servers in the same region."""
        server = get_object_or_404(customer_servers(request.user), pk=pk)
        _held_or_404(server, ip)
        body = MoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        target = get_object_or_404(customer_servers(request.user), pk=body.validated_data["server"])
        moved = addresses.move_address(server, ip, target, request.user)
        row = IPAddress.objects.select_related("pool").get(pk=moved.pk)
        return Response({**address_body(row), "server": str(target.id)})


def _held_or_404(server, ip: str) -> IPAddress:
    """The server's address `ip` (any spelling of it); 404 when the server has no such address."""
    try:
        wanted = str(ipaddress.ip_address(ip))
    except ValueError:
        raise Http404 from None
    row = next((row for row in server.ip_addresses if row.address == wanted), None)
    if row is None:
        raise Http404
    return row
