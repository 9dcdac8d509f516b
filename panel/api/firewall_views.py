"""API v1: a server's inbound firewall (`GET, PUT servers/{id}/firewall/`)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.models import Firewall, Server
from panel.servers import firewall as firewalls
from panel.servers.states import Status


class RuleSerializer(serializers.Serializer):
    protocol = serializers.ChoiceField(choices=[(p, p) for p in firewalls.PROTOCOLS])
    ports = serializers.CharField(
        allow_null=True, help_text='tcp and udp: a port ("22") or a range ("8000-8100"); null: every port'
    )
    sources = serializers.ListField(
        child=serializers.CharField(),
        help_text='IPv4 or IPv6 addresses or networks it comes from ("0.0.0.0/0" and "::/0": anywhere)',
    )


class FirewallUpdateSerializer(serializers.Serializer):
    """Only for the schema: the body is validated by panel.servers.firewall, which reports each field."""

    inbound = RuleSerializer(many=True, help_text=f"allow rules, at most {firewalls.MAX_RULES}")
    default_inbound = serializers.ChoiceField(
        choices=[(p, p) for p in firewalls.POLICIES],
        required=False,
        help_text="what happens to inbound traffic no rule allows; left out: as it is",
    )


class FirewallSerializer(serializers.Serializer):
    inbound = RuleSerializer(many=True)
    default_inbound = serializers.ChoiceField(choices=[(p, p) for p in firewalls.POLICIES])
    applied = serializers.BooleanField(help_text="whether the server's host enforces this version yet")
    applied_at = serializers.DateTimeField(allow_null=True, help_text="when a version was last applied")


def firewall_body(firewall: Firewall) -> dict:
    return FirewallSerializer(
        {
            "inbound": firewall.inbound,
            "default_inbound": firewall.default_inbound,
            "applied": not firewall.pending,
            "applied_at": firewall.applied_at,
        }
    ).data


class ServerFirewall(APIView):
    """The server's inbound firewall: allow rules, and what happens to the rest (`default_inbound`). Replies
    to the server's own connections always come in; outbound traffic is never filtered (spoofed traffic
    never leaves). A change is applied to the running server within a minute: `applied` says when."""

    def server(self) -> Server:
        servers = Server.objects.filter(owner=self.request.user).exclude(status=Status.DELETED)
        return get_object_or_404(servers, pk=self.kwargs["pk"])

    @extend_schema(responses={200: FirewallSerializer})
    def get(self, request, pk):
        return Response(firewall_body(firewalls.firewall_of(self.server())))

    @extend_schema(
        request=FirewallUpdateSerializer,
        responses={
            202: FirewallSerializer,
            400: OpenApiResponse(description="a rule or the default is invalid (`fields` names it)"),
            409: OpenApiResponse(description="the server is being deleted"),
        },
    )
    def put(self, request, pk):
        server = self.server()
        body = request.data if isinstance(request.data, dict) else {}
        current = firewalls.firewall_of(server)
        firewall = firewalls.set_firewall(
            server,
            body.get("inbound"),
            body.get("default_inbound", current.default_inbound),
            request.user,
        )
        # Accepted: the host follows within a minute (`applied`).
        return Response(firewall_body(firewall), status=status.HTTP_202_ACCEPTED)
