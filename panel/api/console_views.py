"""API v1: opening a server's console (`POST servers/{id}/console/`)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.console import sessions
from panel.console.models import ConsoleSession
from panel.servers.models import Server


class ConsoleCreateSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=ConsoleSession.Type.choices)


class ConsoleSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="ws:// or wss:// URL carrying a single-use token")
    expires_at = serializers.DateTimeField()
    type = serializers.ChoiceField(choices=ConsoleSession.Type.choices)


class ServerConsole(APIView):
    """Mint a single-use console URL: RFB (vnc) or raw serial bytes over a websocket; it works once, for
    this user and server, before expires_at (at most 60 s ahead). 409 while the server is not running."""

    @extend_schema(
        request=ConsoleCreateSerializer,
        responses={
            201: ConsoleSerializer,
            409: OpenApiResponse(description="the server is not running"),
        },
    )
    def post(self, request, pk):
        server = get_object_or_404(Server.objects.filter(owner=request.user), pk=pk)
        data = ConsoleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        console_type = data.validated_data["type"]
        url, expires_at = sessions.open_console(server, request.user, console_type, request)
        body = ConsoleSerializer({"url": url, "expires_at": expires_at, "type": console_type}).data
        return Response(body, status=status.HTTP_201_CREATED)
