"""The top bar's navigation: `{% main_nav as nav %}` gives the customer tabs, and for staff and admins the
destinations of the Staff menu, each marked current when the page being shown belongs to it.

Which pages belong to which entry is said here once, by URL name (exact names, never substrings)."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

register = template.Library()


@dataclass(frozen=True)
class Entry:
    label: str | Promise
    url_name: str
    # Pages that belong to the entry besides its own (a list's detail pages, its forms).
    also: tuple[str, ...] = ()
    # Said to screen readers after the label ("Servers (all customers)").
    hint: str | Promise = ""

    def belongs(self, url_name: str) -> bool:
        return url_name == self.url_name or url_name in self.also


@dataclass(frozen=True)
class Link:
    label: str
    href: str
    current: bool
    hint: str = ""


CUSTOMER_TABS = (
    Entry(_("Servers"), "server-list", ("server-order", "server-detail", "server-console", "server-backups")),
    Entry(_("SSH keys"), "ssh-keys"),
    Entry(_("Billing"), "billing", ("billing-top-up", "invoice", "billing-checkout", "billing-details")),
    Entry(
        _("Account"),
        "account",
        (
            "account-activity",
            "password_change",
            "password_change_done",
            "two-factor-setup",
            "two-factor-recovery-codes",
            "two-factor-remove",
        ),
    ),
)
STAFF_ENTRIES = (
    Entry(_("Servers"), "staff-servers", ("staff-server", "staff-server-console"), hint=_("all customers")),
    Entry(_("Customers"), "staff-customers", ("staff-customer", "staff-invoice")),
    Entry(_("Overdue"), "staff-overdue"),
    Entry(_("Match a bank transfer"), "staff-bank-transfers"),
    Entry(_("Tax invoices"), "staff-tax-export"),
    Entry(_("Hosts"), "host-list", ("host-detail", "host-settings")),
    Entry(_("IP pools"), "ip-pool-list", ("ip-pool-detail",)),
    Entry(_("Backup targets"), "backup-target-list", ("backup-target-detail",)),
    Entry(_("Images"), "image-list"),
    # Staff read the seller and payment details there; admins change them.
    Entry(_("Billing settings"), "billing-settings"),
)
ADMIN_ENTRIES = (
    Entry(_("Audit log"), "staff-audit"),
    Entry(_("Django admin"), "admin:index"),
)


@dataclass(frozen=True)
class MainNav:
    tabs: list[Link]
    staff: list[Link]
    admin: list[Link]

    @property
    def staff_current(self) -> Link | None:
        """The Staff menu's entry the page belongs to (the menu's button says so), if any."""
        return next((link for link in (*self.staff, *self.admin) if link.current), None)


def _links(entries: tuple[Entry, ...], url_name: str) -> list[Link]:
    return [
        Link(str(entry.label), reverse(entry.url_name), entry.belongs(url_name), str(entry.hint))
        for entry in entries
    ]


@register.simple_tag(takes_context=True)
def main_nav(context) -> MainNav | None:
    """The navigation for the signed-in user of the page's request; None when nobody is signed in."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    match = request.resolver_match
    url_name = (match.view_name if match is not None else "") or ""
    is_staff = getattr(user, "is_panel_staff", False)
    is_admin = getattr(user, "is_panel_admin", False)
    return MainNav(
        tabs=_links(CUSTOMER_TABS, url_name),
        staff=_links(STAFF_ENTRIES, url_name) if is_staff else [],
        admin=_links(ADMIN_ENTRIES, url_name) if is_admin else [],
    )
