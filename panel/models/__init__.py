from .accounts import ApiToken, User
from .servers import Operation, Server
from .ssh_keys import SSHKey

__all__ = ["ApiToken", "Operation", "SSHKey", "Server", "User"]
