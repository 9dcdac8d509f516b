"""Usage forms: the traffic block staff add to a server's period."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy


class TrafficBlockForm(forms.Form):
    gib = forms.IntegerField(
        label=gettext_lazy("Extra transfer (GiB)"),
        min_value=1,
        max_value=1_000_000,
        help_text=gettext_lazy("For this period only."),
    )
