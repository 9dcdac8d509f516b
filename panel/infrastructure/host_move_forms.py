"""The drain form of the host page: each migration's bandwidth cap and time limit (the panel's defaults
when left empty)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from panel.infrastructure import host_moves


class HostDrainForm(forms.Form):
    max_bandwidth_mib = forms.IntegerField(
        label=_("Bandwidth limit (MiB/s)"),
        required=False,
        min_value=0,
        max_value=host_moves.MAX_BANDWIDTH_MIB,
        help_text=_("Each migration's cap; 0 for none. Empty: the panel's default."),
    )
    timeout_seconds = forms.IntegerField(
        label=_("Time limit (seconds)"),
        required=False,
        min_value=host_moves.MIN_TIMEOUT_SECONDS,
        max_value=host_moves.MAX_TIMEOUT_SECONDS,
        help_text=_("A live migration that takes longer is aborted; the server stays where it was."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["max_bandwidth_mib"].widget.attrs["placeholder"] = str(
            settings.MIGRATION_MAX_BANDWIDTH_MIB
        )
        self.fields["timeout_seconds"].widget.attrs["placeholder"] = str(settings.MIGRATION_TIMEOUT_SECONDS)

    def limits(self) -> dict:
        """The service's keyword arguments: only what was given."""
        return {name: value for name, value in self.cleaned_data.items() if value is not None}
