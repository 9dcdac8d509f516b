"""SSH keys in the activity log: an account's keys are added and deleted by the page and by the API."""

from __future__ import annotations

from django.utils.translation import gettext_noop

from panel.accounts.models import SSHKey
from panel.activity import log as activity
from panel.activity.models import ActivityEvent


def record_ssh_key(key: SSHKey, added: bool) -> None:
    activity.record(
        ActivityEvent.Type.SSH_KEY_ADDED if added else ActivityEvent.Type.SSH_KEY_DELETED,
        summary=(
            gettext_noop("SSH key %(name)s added (%(fingerprint)s).")
            if added
            else gettext_noop("SSH key %(name)s deleted (%(fingerprint)s).")
        ),
        data={"name": key.name, "fingerprint": key.fingerprint},
        account=key.owner,
        actor=key.owner,
        target=f"ssh_key:{key.pk}",
    )
