"""A small client of PowerDNS's HTTP API (the authoritative server's `/api/v1`, `X-API-Key` header) for
reverse DNS: publishing and withdrawing the PTR record of one address in the reverse zone that holds it.

The zone is found among the server's zones: the longest one whose name is a suffix of the address's PTR
name (`5.2.0.192.in-addr.arpa.`, or the 32 nibbles of an IPv6 address under `ip6.arpa.`), so a /24 zone
and a delegated /26 or a /48 and a /64 of IPv6 both work. The zones themselves are the operator's: this
module never creates or deletes one. Settings: POWERDNS_API_URL (empty: not configured), POWERDNS_API_KEY,
POWERDNS_SERVER_ID, POWERDNS_TTL, POWERDNS_TIMEOUT.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import quote

import requests
from django.conf import settings


class PowerDNSError(Exception):
    """PowerDNS could not do what was asked: not configured, no reverse zone for the address, an HTTP error
    answer, a timeout or no connection. The message says which, for the operator."""


class NoZone(PowerDNSError):
    """The server has no reverse zone that holds the address's PTR name."""


def is_configured() -> bool:
    return bool(settings.POWERDNS_API_URL)


def ptr_name(address: str) -> str:
    """The PTR record's owner name, with its trailing dot: 5.2.0.192.in-addr.arpa. or the nibbles of an
    IPv6 address under ip6.arpa."""
    return ipaddress.ip_address(address.strip()).reverse_pointer + "."


def _fqdn(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def _base_url() -> str:
    if not is_configured():
        raise PowerDNSError("PowerDNS is not configured (POWERDNS_API_URL is empty)")
    base = settings.POWERDNS_API_URL.rstrip("/")
    if not base.endswith("/api/v1"):
        base += "/api/v1"
    return f"{base}/servers/{quote(settings.POWERDNS_SERVER_ID, safe='')}"


def _request(method: str, path: str, body: dict | None = None) -> requests.Response:
    url = _base_url() + path
    timeout = settings.POWERDNS_TIMEOUT
    try:
        response = requests.request(
            method,
            url,
            json=body,
            headers={"X-API-Key": settings.POWERDNS_API_KEY, "Accept": "application/json"},
            timeout=timeout,
        )
    except requests.Timeout:
        raise PowerDNSError(f"PowerDNS did not answer {method} {path} within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise PowerDNSError(f"PowerDNS could not be reached ({method} {path}): {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("error") or response.text
        except ValueError:
            detail = response.text
        detail = " ".join(str(detail).split())[:300] or response.reason
        raise PowerDNSError(f"PowerDNS answered {response.status_code} to {method} {path}: {detail}")
    return response


def _json(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        raise PowerDNSError(
            f"PowerDNS answered with something other than JSON ({response.status_code})"
        ) from None


def zones() -> list[dict]:
    """The server's zones as PowerDNS lists them (`id`, `name`, `kind`, ...; no records)."""
    answer = _json(_request("GET", "/zones"))
    if not isinstance(answer, list):
        raise PowerDNSError("PowerDNS answered GET /zones with something other than a list of zones")
    return answer


def zone_for(address: str) -> dict:
    """The zone holding the address's PTR name: the longest of the server's zones whose name is a suffix of
    it (by whole labels). NoZone when there is none."""
    name = ptr_name(address)
    best = None
    for zone in zones():
        zone_name = _fqdn(str(zone.get("name", "")))
        if zone_name == "." or not (name == zone_name or name.endswith("." + zone_name)):
            continue
        if best is None or len(zone_name) > len(_fqdn(best["name"])):
            best = zone
    if best is None:
        raise NoZone(f"PowerDNS has no reverse zone for {address} ({name})")
    return best


def _zone_path(zone: dict) -> str:
    return "/zones/" + quote(str(zone.get("id") or zone["name"]), safe="")


def _patch(zone: dict, rrset: dict) -> None:
    _request("PATCH", _zone_path(zone), {"rrsets": [rrset]})


def publish(address: str, name: str) -> None:
    """Make the address's PTR record point at `name` (a hostname; the trailing dot is added), replacing any
    record there was. NoZone, or PowerDNSError for what else went wrong."""
    zone = zone_for(address)
    _patch(
        zone,
        {
            "name": ptr_name(address),
            "type": "PTR",
            "ttl": settings.POWERDNS_TTL,
            "changetype": "REPLACE",
            "records": [{"content": _fqdn(name), "disabled": False}],
        },
    )


def withdraw(address: str) -> None:
    """Remove the address's PTR record (nothing to do when it has none, or no zone holds it)."""
    try:
        zone = zone_for(address)
    except NoZone:
        return
    _patch(zone, {"name": ptr_name(address), "type": "PTR", "changetype": "DELETE"})


def published(address: str) -> list[str]:
    """The names the address's PTR record points at on the server now (with trailing dots; empty: none)."""
    try:
        zone = zone_for(address)
    except NoZone:
        return []
    name = ptr_name(address)
    detail = _json(_request("GET", _zone_path(zone)))
    return [
        record["content"]
        for rrset in detail.get("rrsets", [])
        if rrset.get("type") == "PTR" and _fqdn(rrset.get("name", "")) == name
        for record in rrset.get("records", [])
        if not record.get("disabled")
    ]
