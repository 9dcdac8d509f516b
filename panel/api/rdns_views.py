"""API v1: reverse DNS of a server's addresses (`GET, PUT servers/{id}/rdns/`)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from hypervisor.models import IPAddress
from panel.servers import reverse_dns
from panel.servers.models import Server

DNS_STATES = [reverse_dns.PUBLISHED, reverse_dns.PENDING, reverse_dns.FAILED, reverse_dns.NOT_CONFIGURED]


class ReverseDnsUpdateSerializer(serializers.Serializer):
    ip = serializers.CharField(max_length=45, help_text="one of the server's IPv4 or IPv6 addresses")
    name = serializers.CharField(
        max_length=253,
        allow_blank=True,
        allow_null=True,
        help_text="a hostname such as mail.example.com; empty or null removes the name",
    )


class ReverseDnsSerializer(serializers.Serializer):
    ip = serializers.CharField(source="address")
    name = serializers.CharField(source="ptr")
    dns = serializers.SerializerMethodField(
        help_text="published, pending, failed, or not_configured (the panel publishes no DNS)"
    )

    def get_dns(self, address) -> str:
        return reverse_dns.dns_status(address)


class ServerReverseDns(generics.ListAPIView):
    """The PTR names of the server's addresses (GET), and setting or clearing one of them (PUT). The name
    is published to the panel's DNS server by a worker within a minute; `dns` says where it stands."""

    serializer_class = ReverseDnsSerializer

    def server(self) -> Server:
        return get_object_or_404(Server.objects.filter(owner=self.request.user), pk=self.kwargs["pk"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema's generator
            return IPAddress.objects.none()
        return self.server().ip_addresses

    @extend_schema(
        request=ReverseDnsUpdateSerializer,
        responses={
            200: ReverseDnsSerializer,
            400: OpenApiResponse(description="not an address of this server, or not a hostname"),
            409: OpenApiResponse(description="the server is deleted"),
        },
    )
    def put(self, request, pk):
        server = self.server()
        data = ReverseDnsUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        address = reverse_dns.set_reverse_dns(
            server, data.validated_data["ip"], data.validated_data["name"] or "", request.user
        )
        return Response(ReverseDnsSerializer(address).data)
