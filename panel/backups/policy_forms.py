"""The customer's backup policy form on the server's Backups tab (panel.backups.policies saves it)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator
from django.utils.translation import gettext_lazy as _

from panel.backups.models import BackupPolicy


class BackupPolicyForm(forms.Form):
    enabled = forms.BooleanField(label=_("Back up this server automatically"), required=False)
    schedule = forms.ChoiceField(
        label=_("How often"), choices=BackupPolicy.Schedule.choices, widget=forms.RadioSelect
    )
    retention = forms.IntegerField(label=_("Backups kept"), min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["retention"]
        field.max_value = settings.BACKUP_RETENTION_MAX
        field.validators.append(MaxValueValidator(settings.BACKUP_RETENTION_MAX))
        field.widget.attrs.update(min=1, max=settings.BACKUP_RETENTION_MAX)
        field.help_text = _("From 1 to %(max)s; the oldest backup goes when a new one is kept.") % {
            "max": settings.BACKUP_RETENTION_MAX
        }

    @classmethod
    def for_policy(cls, policy: BackupPolicy, data=None) -> BackupPolicyForm:
        return cls(
            data,
            initial={"enabled": policy.enabled, "schedule": policy.schedule, "retention": policy.retention},
        )
