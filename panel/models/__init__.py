from .accounts import ApiToken, User
from .notices import Notice
from .quotas import Quota
from .servers import Operation, Server, Snapshot
from .ssh_keys import SSHKey

__all__ = ["ApiToken", "Notice", "Quota", "Operation", "SSHKey", "Server", "Snapshot", "User"]
