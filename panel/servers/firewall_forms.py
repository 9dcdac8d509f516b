"""The Firewall tab's form: one row per rule (a formset: empty rows to add rules, a Remove box on each, more
rows on request, all without JavaScript) and the default for the rest. Each row is checked by the same
rules as the API (panel.servers.firewall), with the message on its field."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from panel.models import Firewall
from panel.servers import firewall as firewalls

PREFIX = "rules"
EXTRA_ROWS = 3
MORE_ROWS = 3  # added by "More rows"
# Rows a posted form may have at most (rules, empty rows and removed ones): anything beyond is refused.
ABSOLUTE_MAX_ROWS = firewalls.MAX_RULES + 30

PROTOCOL_CHOICES = [("tcp", "TCP"), ("udp", "UDP"), ("icmp", "ICMP"), ("any", _("Any protocol"))]


class RuleForm(forms.Form):
    protocol = forms.ChoiceField(label=_("Protocol"), choices=PROTOCOL_CHOICES, initial="tcp")
    ports = forms.CharField(
        label=_("Ports"),
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"placeholder": "22", "autocomplete": "off"}),
    )
    sources = forms.CharField(
        label=_("From"),
        required=False,
        max_length=1000,
        widget=forms.TextInput(
            attrs={"placeholder": "0.0.0.0/0, ::/0", "spellcheck": "false", "autocomplete": "off"}
        ),
    )

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            data["rule"] = firewalls.clean_rule(
                {
                    "protocol": data.get("protocol"),
                    "ports": data.get("ports"),
                    "sources": firewalls.split_sources(data.get("sources") or ""),
                }
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return data


class BaseRuleFormSet(forms.BaseFormSet):
    def clean(self):
        super().clean()
        if self.is_bound and (self.management_form.cleaned_data.get("TOTAL_FORMS") or 0) < 0:
            # Django reads a negative count as no rows, which would save "no rules".
            raise ValidationError(_("The rows could not be read; please reload the page and try again."))
        if any(self.errors):
            return
        if len(self.rules()) > firewalls.MAX_RULES:
            raise ValidationError(_("At most %(count)s rules.") % {"count": firewalls.MAX_RULES})

    def rule_forms(self) -> list[RuleForm]:
        """The rows that are rules, in order: not removed, and not left empty."""
        chosen = []
        for index, form in enumerate(self.forms):
            if self.can_delete and self._should_delete_form(form):
                continue
            if index >= self.initial_form_count() and not form.has_changed():
                continue  # an empty row
            chosen.append(form)
        return chosen

    def rules(self) -> list[dict]:
        return [form.cleaned_data["rule"] for form in self.rule_forms()]


RuleFormSet = forms.formset_factory(
    RuleForm,
    formset=BaseRuleFormSet,
    extra=EXTRA_ROWS,
    can_delete=True,
    max_num=ABSOLUTE_MAX_ROWS,
    absolute_max=ABSOLUTE_MAX_ROWS,
)


class PolicyForm(forms.Form):
    default_inbound = forms.ChoiceField(
        label=_("Other inbound traffic"),
        choices=[
            (Firewall.Policy.ACCEPT, _("Accept it (no firewall)")),
            (Firewall.Policy.DROP, _("Drop it: only what the rules allow comes in")),
        ],
        widget=forms.RadioSelect,
    )


def initial_rows(firewall: Firewall) -> list[dict]:
    return [
        {
            "protocol": rule["protocol"],
            "ports": rule.get("ports") or "",
            "sources": ", ".join(rule["sources"]),
        }
        for rule in firewall.inbound
    ]


def with_more_rows(data, count: int = MORE_ROWS):
    """The posted form with `count` more empty rows (for "More rows": nothing is saved). The row counts are
    read through the formset's management form: counts posted wrong (not numbers, below zero, too many)
    read as none, or as the most a form may have."""
    data = data.copy()
    counts = RuleFormSet(data, prefix=PREFIX).management_form.cleaned_data
    total = max(0, min(counts.get("TOTAL_FORMS") or 0, ABSOLUTE_MAX_ROWS))
    initial = max(0, min(counts.get("INITIAL_FORMS") or 0, total))
    more = max(0, min(count, ABSOLUTE_MAX_ROWS - total))
    for index in range(total, total + more):
        data[f"{PREFIX}-{index}-protocol"] = "tcp"  # the initial value: an untouched empty row
    data[f"{PREFIX}-TOTAL_FORMS"] = str(total + more)
    data[f"{PREFIX}-INITIAL_FORMS"] = str(initial)
    return data
