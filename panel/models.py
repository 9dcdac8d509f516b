"""The panel's models, each defined beside the code of its subject (NetBox style); Django loads them
from here, and code may import them from here or from their sub-package."""

from panel.accounts.models import ApiToken, Quota, SSHKey, User
from panel.activity.models import ActivityEvent
from panel.backups.models import Backup, BackupPolicy
from panel.console.models import ConsoleSession
from panel.infrastructure.models import HostMove, HostMoveItem, Notice
from panel.servers.models import Firewall, Operation, Server, Snapshot
from panel.usage.models import MeterState, TransferPeriod, UsageSample

__all__ = [
    "ActivityEvent",
    "ApiToken",
    "Backup",
    "BackupPolicy",
    "ConsoleSession",
    "HostMove",
    "HostMoveItem",
    "MeterState",
    "Notice",
    "Operation",
    "Quota",
    "SSHKey",
    "Server",
    "Firewall",
    "Snapshot",
    "TransferPeriod",
    "UsageSample",
    "User",
]
