"""Template tags for the usage partials: the server page's transfer and charts, a host's charts, the
staff customer page's transfer, byte counts in GiB and memory sizes, localised (a decimal comma in
Indonesian)."""

from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils import formats
from django.utils.translation import ngettext

from panel.usage import display as usage
from panel.usage import metering

register = template.Library()


@register.simple_tag
def server_transfer(server):
    """{% server_transfer server as transfer %}: the server's current period (panel.usage.metering); None for
    a deleted server."""
    if server.status == server.Status.DELETED:
        return None
    return usage.server_transfer(server)


@register.simple_tag
def customer_transfer(servers):
    """{% customer_transfer servers as transfer %}: each server's period and the customer's totals."""
    return usage.customer_transfer(servers)


def _window_key(context) -> str | None:
    request = context.get("request")
    return request.GET.get("window") if request is not None else None


@register.inclusion_tag("panel/usage/_card.html", takes_context=True)
def server_usage_card(context, server):
    """The server page's Usage card; the time range comes from ?window= (24h, 7d or 30d)."""
    return {**usage.server_charts(server, _window_key(context)), "request": context.get("request")}


@register.inclusion_tag("panel/usage/_card.html", takes_context=True)
def host_usage_card(context, host):
    """The host page's Usage card: the charts summed over the host's servers."""
    return {**usage.host_charts(host, _window_key(context)), "request": context.get("request"), "host": host}


@register.filter
def gib(value) -> str:
    """Bytes as GiB (1024³ bytes) with two decimals, localised: 91268055040 → 85.00."""
    return "" if value in (None, "") else metering.format_gib(int(value))


@register.filter
def mib_size(value) -> str:
    """Memory in MiB as people read it, localised: 512 → "512 MiB", 2048 → "2 GiB", 1536 → "1.5 GiB"
    ("1,5 GiB" in Indonesian)."""
    if value in (None, ""):
        return ""
    mib = int(value)
    if abs(mib) < 1024:
        return f"{mib} MiB"
    gib = (Decimal(mib) / 1024).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    places = 0 if gib == gib.to_integral_value() else 1
    return f"{formats.number_format(gib, decimal_pos=places, use_l10n=True, force_grouping=True)} GiB"


@register.filter
def vcpu_count(value) -> str:
    """ "1 vCPU", "4 vCPUs" in the active language: the templates' {% blocktranslate count vcpus=… %} (the
    same message) as a filter, for tables that say it on every row."""
    count = int(value)
    return ngettext("%(vcpus)s vCPU", "%(vcpus)s vCPUs", count) % {"vcpus": count}


@register.filter
def exact_bytes(value) -> str:
    """The exact byte count, for a title attribute next to a GiB figure: "91,268,055,040 bytes"."""
    count = int(value or 0)
    return ngettext("%(count)s byte", "%(count)s bytes", count) % {"count": intcomma(count)}
