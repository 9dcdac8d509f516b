"""Server queries the pages and the API share: a customer's own servers, and many servers' addresses in
one query (hypervisor IPAM knows a server by its UUID)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest

from hypervisor.ipam import addresses_of
from panel.servers.models import Server, address_order


def own_servers(request: HttpRequest) -> QuerySet[Server]:
    """The signed-in customer's servers (deleted ones too), with what their pages show."""
    return Server.objects.filter(owner=request.user).select_related("plan", "image", "region")


def attach_addresses(servers) -> list[Server]:
    """Fill ip_addresses for many servers with one query; returns the servers as a list."""
    servers = list(servers)
    by_consumer = addresses_of(server.id for server in servers)
    for server in servers:
        server.__dict__["ip_addresses"] = sorted(by_consumer.get(str(server.id), []), key=address_order)
    return servers
