"""Server queries the pages and the API share: a customer's own servers, one of them as clients poll it,
and many servers' addresses in one query (hypervisor IPAM knows a server by its UUID)."""

from __future__ import annotations

import functools
import uuid

from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.models import Plan
from hypervisor.ipam import addresses_of
from hypervisor.models import Image, Region
from panel.raw_rows import Columns
from panel.servers.models import Server, address_order
from panel.servers.operation_rows import read_addresses
from prepared_statements import execute


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


@functools.cache
def _own_server_statement() -> tuple[str, tuple[Columns, ...]]:
    parts = Columns(Server, "s"), Columns(Plan, "p"), Columns(Image, "i"), Columns(Region, "r")
    quote = connection.ops.quote_name

    def column(field: str) -> str:
        return quote(Server._meta.get_field(field).column)

    def join(model, alias: str, field: str) -> str:
        table, key = quote(model._meta.db_table), quote(model._meta.pk.column)
        return f"JOIN {table} {alias} ON {alias}.{key} = s.{column(field)}"

    sql = (
        f"SELECT {', '.join(part.sql for part in parts)} "  # noqa: S608 (names from the models)
        f"FROM {quote(Server._meta.db_table)} s {join(Plan, 'p', 'plan')} {join(Image, 'i', 'image')} "
        f"{join(Region, 'r', 'region')} "
        f"WHERE s.{column('id')} = %s AND s.{column('owner')} = %s"
    )
    return sql, parts


def own_server(owner_id: int, server_id: uuid.UUID) -> Server | None:
    """One of the customer's servers (deleted ones too) with its plan, image, region and addresses, or None
    when they have no such server: what clients poll (GET /api/v1/servers/{id}/), in two prepared
    statements instead of the ORM's two compiled queries."""
    sql, (server, plan, image, region) = _own_server_statement()
    with connection.cursor() as cursor:
        execute(cursor, sql, [Server._meta.pk.get_db_prep_value(server_id, connection), owner_id])
        row = cursor.fetchone()
    if row is None:
        return None
    found = server.build(row)
    start = server.width
    for related, part in (("plan", plan), ("image", image), ("region", region)):
        Server._meta.get_field(related).set_cached_value(found, part.build(row, start))
        start += part.width
    read_addresses(found)
    return found
