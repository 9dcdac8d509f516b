from .accounts import ApiToken, User
from .activity import ActivityEvent
from .notices import Notice
from .quotas import Quota
from .servers import Operation, Server, Snapshot
from .ssh_keys import SSHKey
from .usage import MeterState, TransferPeriod, UsageSample

__all__ = [
    "ActivityEvent",
    "ApiToken",
    "Notice",
    "MeterState",
    "Quota",
    "TransferPeriod",
    "UsageSample",
    "Operation",
    "SSHKey",
    "Server",
    "Snapshot",
    "User",
]
