from .accounts import ApiToken, User
from .notices import Notice
from .servers import Operation, Server, Snapshot
from .ssh_keys import SSHKey

__all__ = ["ApiToken", "Notice", "Operation", "SSHKey", "Server", "Snapshot", "User"]
