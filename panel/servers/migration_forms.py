"""The staff server page's Migrate form (admins only): the target host (another schedulable host of the
server's region with room for it, or any: placement chooses), the bandwidth cap and the time limit of a live
migration."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hypervisor.models import Host
from panel.models import Server
from panel.servers import migration


class MigrationLimitsForm(forms.Form):
    """A live migration's bandwidth cap and time limit, as the admin sets them (the staff page's Migrate
    form, the host page's drain form); left empty: the panel's defaults."""

    max_bandwidth_mib = forms.IntegerField(
        label=gettext_lazy("Bandwidth cap (MiB/s)"),
        required=False,
        min_value=0,
        max_value=migration.MAX_BANDWIDTH_MIB,
        help_text=gettext_lazy("0: no cap."),
    )
    timeout_seconds = forms.IntegerField(
        label=gettext_lazy("Time limit (seconds)"),
        required=False,
        min_value=migration.MIN_TIMEOUT_SECONDS,
        max_value=migration.MAX_TIMEOUT_SECONDS,
        help_text=gettext_lazy(
            "A live migration that takes longer is aborted; the server stays where it was."
        ),
    )

    def limits(self) -> dict:
        """The service's keyword arguments (max_bandwidth_mib, timeout_seconds): only those given."""
        names = ("max_bandwidth_mib", "timeout_seconds")
        return {name: self.cleaned_data[name] for name in names if self.cleaned_data.get(name) is not None}


class MigrateForm(MigrationLimitsForm):
    field_order = ["host", "max_bandwidth_mib", "timeout_seconds"]

    host = forms.TypedChoiceField(
        label=gettext_lazy("Target host"),
        required=False,
        coerce=int,
        empty_value=None,
        help_text=gettext_lazy("The other ready hosts of the server's region that have room for it."),
    )

    def __init__(self, server: Server, *args, **kwargs):
        kwargs.setdefault(
            "initial",
            {
                "max_bandwidth_mib": settings.MIGRATION_MAX_BANDWIDTH_MIB,
                "timeout_seconds": settings.MIGRATION_TIMEOUT_SECONDS,
            },
        )
        super().__init__(*args, **kwargs)
        for name in ("max_bandwidth_mib", "timeout_seconds"):  # shown filled in with the defaults
            self.fields[name].required = True
        self.server = server
        self.hosts = {host.pk: host for host in migration.targets(server)}
        self.fields["host"].choices = [
            ("", _("Any host: the panel chooses")),
            *[
                (host.pk, _("%(host)s (%(memory)s MiB of memory free)") % {
                    "host": host.name, "memory": host.free_memory_mib,
                })
                for host in self.hosts.values()
            ],
        ]  # fmt: skip

    def target(self) -> Host | None:
        """The host chosen (None: any), once the form is valid."""
        chosen = self.cleaned_data.get("host")
        return None if chosen is None else self.hosts[chosen]
