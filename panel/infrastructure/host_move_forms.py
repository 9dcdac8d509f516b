"""The drain form of the host page: each migration's bandwidth cap and time limit (the panel's defaults
when left empty)."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from panel.servers.migration_forms import MigrationLimitsForm


class HostDrainForm(MigrationLimitsForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bandwidth, timeout = self.fields["max_bandwidth_mib"], self.fields["timeout_seconds"]
        bandwidth.help_text = _("Each migration's cap; 0 for none. Empty: the panel's default.")
        bandwidth.widget.attrs["placeholder"] = str(settings.MIGRATION_MAX_BANDWIDTH_MIB)
        timeout.widget.attrs["placeholder"] = str(settings.MIGRATION_TIMEOUT_SECONDS)
