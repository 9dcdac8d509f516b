"""A server's inbound firewall and the network filter that carries it to the host (hypervisor.network_filter:
anti-spoofing for IPv4 and IPv6 plus the firewall, bound to the server's interface).

The rules are allow rules for traffic to the server (`tcp`, `udp`, `icmp` or `any`; ports for tcp and udp;
the sources they come from); `default_inbound` says what happens to the rest (`accept`, as before
firewalls existed, or `drop`). Replies to the server's own connections, DHCP answers and IPv6 neighbour
discovery always come in; outbound traffic is never filtered, except spoofed traffic, which never leaves.

Every change the filter on the host must follow (the rules, the default, the server's addresses) raises the
`Firewall.version` in the transaction that makes it, and sends `panel.tasks.apply_network_filter` after
the commit; panel.servers.filter_sync applies it (workers take turns per server), records it, and sends
again what is behind. Its reading and worker functions are re-exported here.

A server has no firewall row until something changes (servers made before firewalls existed, and new ones):
it then reads as no rules, accept.
"""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hypervisor import network_filter
from panel.activity import log as activity
from panel.models import ActivityEvent, Firewall, Server, User
from panel.servers.actions import Conflict
from panel.servers.filter_sync import GONE as GONE
from panel.servers.filter_sync import addresses_changed as addresses_changed
from panel.servers.filter_sync import apply_pending as apply_pending
from panel.servers.filter_sync import filter_spec as filter_spec
from panel.servers.filter_sync import firewall_of as firewall_of
from panel.servers.filter_sync import resend_pending as resend_pending
from panel.servers.filter_sync import send_apply
from panel.servers.states import Status, Task

PROTOCOLS = network_filter.PROTOCOLS  # tcp, udp, icmp, any
PORT_PROTOCOLS = ("tcp", "udp")
POLICIES = tuple(Firewall.Policy.values)  # accept, drop
MAX_RULES = 50
MAX_SOURCES = 20
ANYWHERE = ("0.0.0.0/0", "::/0")


# -- Validation: the same rules for the API and the pages, with a message per field.


def clean_protocol(value) -> str:
    protocol = str(value or "").strip().lower()
    if protocol not in PROTOCOLS:
        raise ValidationError(_("Choose tcp, udp, icmp or any."), code="protocol")
    return protocol


def clean_ports(protocol: str, value) -> str | None:
    """A port ("22") or a range ("8000-8100"), written plainly; None for every port (and for icmp and
    any, which have none)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if protocol not in PORT_PROTOCOLS:
        raise ValidationError(_("Ports apply only to tcp and udp; leave them empty."), code="ports")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(_("Give a port such as 22 or a range such as 8000-8100."), code="ports")
    low, dash, high = str(value).replace(" ", "").partition("-")
    try:
        first, last = int(low), int(high) if dash else int(low)
    except ValueError:
        raise ValidationError(
            _("Give a port such as 22 or a range such as 8000-8100."), code="ports"
        ) from None
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        raise ValidationError(_("Ports go from 1 to 65535."), code="ports")
    if first > last:
        raise ValidationError(
            _("The range must start at its lower port: %(low)s-%(high)s.") % {"low": last, "high": first},
            code="ports",
        )
    return str(first) if first == last else f"{first}-{last}"


def split_sources(text: str) -> list[str]:
    """Sources typed in one box: separated by commas, spaces or new lines."""
    return [part for part in text.replace(",", " ").split() if part]


def clean_sources(value) -> list[str]:
    """One to MAX_SOURCES IPv4 or IPv6 networks or addresses, written as networks ("203.0.113.0/24",
    "2001:db8::5/128"), each once, in the order given."""
    if isinstance(value, str):
        value = split_sources(value)
    if not isinstance(value, list | tuple):
        raise ValidationError(_("Give a list of addresses or networks."), code="sources")
    if not value:
        raise ValidationError(
            _("Give at least one source; 0.0.0.0/0 and ::/0 mean anywhere."), code="sources"
        )
    if len(value) > MAX_SOURCES:
        raise ValidationError(
            _("At most %(count)s sources per rule.") % {"count": MAX_SOURCES}, code="sources"
        )
    sources = []
    for item in value:
        text = str(item).strip() if isinstance(item, str | int) and not isinstance(item, bool) else ""
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValidationError(
                _("“%(source)s” is not an IPv4 or IPv6 address or network (such as 203.0.113.0/24).")
                % {"source": item},
                code="sources",
            ) from None
        if str(network) not in sources:
            sources.append(str(network))
    return sources


def clean_rule(rule) -> dict:
    """One rule as it is stored: {"protocol", "ports", "sources"}. ValidationError with a message per
    field (protocol, ports, sources)."""
    if not isinstance(rule, dict):
        raise ValidationError(
            {"protocol": [_("Each rule is an object with protocol, ports and sources.")]}, code="rule"
        )
    errors: dict[str, list[str]] = {}
    cleaned: dict = {}
    try:
        cleaned["protocol"] = clean_protocol(rule.get("protocol"))
    except ValidationError as exc:
        errors["protocol"] = exc.messages
    if "protocol" in cleaned:
        try:
            cleaned["ports"] = clean_ports(cleaned["protocol"], rule.get("ports"))
        except ValidationError as exc:
            errors["ports"] = exc.messages
    try:
        cleaned["sources"] = clean_sources(rule.get("sources"))
    except ValidationError as exc:
        errors["sources"] = exc.messages
    if errors:
        raise ValidationError(errors)
    return {"protocol": cleaned["protocol"], "ports": cleaned["ports"], "sources": cleaned["sources"]}


def clean_policy(value) -> str:
    policy = str(value or "").strip().lower()
    if policy not in POLICIES:
        raise ValidationError(_("Choose accept or drop."), code="default_inbound")
    return policy


def clean_firewall(inbound, default_inbound) -> tuple[list[dict], str]:
    """The rules and the default as they are stored. ValidationError keyed by field: `inbound`,
    `inbound.<n>.protocol|ports|sources` (n counts from 0) and `default_inbound`."""
    errors: dict[str, list[str]] = {}
    rules: list[dict] = []
    if not isinstance(inbound, list):
        errors["inbound"] = [_("Give a list of rules (it may be empty).")]
    elif len(inbound) > MAX_RULES:
        errors["inbound"] = [_("At most %(count)s rules.") % {"count": MAX_RULES}]
    else:
        for index, rule in enumerate(inbound):
            try:
                rules.append(clean_rule(rule))
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    errors[f"inbound.{index}.{field}"] = messages
    try:
        policy = clean_policy(default_inbound)
    except ValidationError as exc:
        errors["default_inbound"] = exc.messages
    if errors:
        raise ValidationError(errors)
    return rules, policy


# -- Changes


def _live(server: Server) -> Server:
    current = Server.objects.filter(pk=server.pk).only("status", "task", "region", "owner", "name").first()
    if current is None or current.status == Status.DELETED:
        raise Conflict(_("This server has been deleted."))
    if current.status == Status.DELETING or current.task == Task.DELETE:
        raise Conflict(_("This server is being deleted."))
    return current


def _change(server: Server, inbound: list[dict], policy: str, actor: User | None, summary: str) -> Firewall:
    with transaction.atomic():
        current = _live(server)
        Firewall.objects.get_or_create(server_id=server.pk)
        # The row lock orders two changes of the same firewall; nothing else is locked after it.
        row = Firewall.objects.select_for_update().get(pk=server.pk)
        if row.inbound == inbound and row.default_inbound == policy:
            if row.pending:
                send_apply(server.pk, current.region_id)
            return row
        Firewall.objects.filter(pk=server.pk).update(
            inbound=inbound,
            default_inbound=policy,
            version=F("version") + 1,
            updated_by=actor if actor is not None and actor.is_authenticated else None,
            updated_at=timezone.now(),
        )
        activity.record(
            ActivityEvent.Type.FIREWALL_CHANGED,
            summary=summary,
            data={"name": current.name, "rules": len(inbound), "default": policy},
            account=server.owner if server.owner_id else None,
            actor=actor,
            target=f"server:{server.pk}",
            staff_action=bool(actor is not None and actor.is_panel_staff and actor.pk != current.owner_id),
        )
        send_apply(server.pk, current.region_id)
        row.refresh_from_db()
    return row


CHANGED = {
    Firewall.Policy.ACCEPT: gettext_noop(
        "Changed the firewall of server %(name)s: %(rules)s rules, all inbound traffic accepted."
    ),
    Firewall.Policy.DROP: gettext_noop(
        "Changed the firewall of server %(name)s: %(rules)s rules, other inbound traffic dropped."
    ),
}


def set_firewall(server: Server, inbound, default_inbound, actor: User | None) -> Firewall:
    """Replace the server's inbound rules and default policy (validated here: ValidationError keyed by
    field, nothing changed). The caller has checked the actor may act on the server; Conflict when it is
    deleted or being deleted. The host follows within a minute (the change is applied by a worker)."""
    rules, policy = clean_firewall(inbound, default_inbound)
    return _change(server, rules, policy, actor, CHANGED[policy])


def reset_firewall(server: Server, actor: User | None) -> Firewall:
    """Staff: back to no rules, everything accepted (what a server has before any firewall)."""
    return _change(
        server,
        [],
        Firewall.Policy.ACCEPT,
        actor,
        gettext_noop("Reset the firewall of server %(name)s: no rules, everything accepted."),
    )
