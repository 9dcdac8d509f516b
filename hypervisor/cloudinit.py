"""Guest configuration through a cloud-init NoCloud seed: an ISO 9660 image with the volume label
`cidata` holding meta-data, user-data and network-config, built in Python with pycdlib.

The documents are written as JSON, which YAML parsers read (cloud-init reads them with PyYAML): the standard
library writes it several times faster than PyYAML, and every string in it is quoted, so none is taken for
a number or a boolean (a host name "123", "no"). Characters YAML does not take as they are, or escaped as
JSON escapes them (an emoji's surrogate pair), are written as YAML escapes (_document)."""

from __future__ import annotations

import io
import ipaddress
import json
import re
import warnings
from dataclasses import dataclass, field
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pycdlib

try:  # the stdlib module until Python 3.12, the crypt-r package after
    import crypt_r as _crypt
except ImportError:  # pragma: no cover - depends on the Python version
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt


def hash_password(password: str) -> str:
    """A SHA-512 crypt hash with a random salt, as /etc/shadow holds it."""
    return _crypt.crypt(password, _crypt.mksalt(_crypt.METHOD_SHA512))


@dataclass
class Route:
    to: str  # 0.0.0.0/0 or ::/0
    via: str
    # The gateway is not inside any of the interface's networks (a link-local or another subnet's router).
    on_link: bool = False


@dataclass
class StaticNetwork:
    """The guest's static addresses of both families on its one interface (CIDR form, the primary IPv4
    address first), its default routes and nameservers."""

    mac: str
    addresses: list[str]
    routes: list[Route] = field(default_factory=list)
    nameservers: list[str] = field(default_factory=list)

    def config(self) -> dict:
        """network-config version 2, matched by MAC so the guest's interface name does not matter."""
        interface: dict = {
            "match": {"macaddress": self.mac},
            "set-name": "eth0",
            "addresses": list(self.addresses),
        }
        routes = []
        for route in self.routes:
            entry: dict = {"to": route.to, "via": route.via}
            if route.on_link:
                entry["on-link"] = True
            routes.append(entry)
        if routes:
            interface["routes"] = routes
        if any(":" in address for address in self.addresses):
            # The addresses are static: router advertisements must not add others the filter would drop.
            interface["accept-ra"] = False
        if self.nameservers:
            interface["nameservers"] = {"addresses": list(self.nameservers)}
        return {"version": 2, "ethernets": {"eth0": interface}}


# Characters a YAML reader refuses or changes when they stand in a document as they are (C1 controls, DEL,
# NEL, the line and paragraph separators, the byte order mark, non-characters, surrogates): escaped as
# "\uXXXX", which JSON and YAML read alike. Characters beyond the BMP (an emoji in an SSH key's comment) stay
# as they are: JSON's escape for them, a surrogate pair, is not one character to a YAML reader.
_UNSAFE_IN_YAML = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def _document(data: dict) -> str:
    """A document of the seed: JSON (YAML's flow style), indented for people who read it in the guest."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _UNSAFE_IN_YAML.sub(lambda match: f"\\u{ord(match[0]):04x}", text) + "\n"


ROOT_LOGIN_DROP_IN = "/etc/ssh/sshd_config.d/00-vpspanel-rescue.conf"
ROOT_LOGIN_CONFIG = "PermitRootLogin yes\nPasswordAuthentication yes\n"
RELOAD_SSHD = "systemctl reload-or-restart ssh || systemctl reload-or-restart sshd || true"


@dataclass
class GuestConfig:
    instance_id: str
    hostname: str
    ssh_keys: list[str] = field(default_factory=list)
    password_hash: str = ""
    network: StaticNetwork | None = None
    user_data: str = ""
    # Rescue mode: root may log in over SSH with its password (most images allow root only a key).
    root_password_login: bool = False

    def meta_data(self) -> str:
        return _document({"instance-id": self.instance_id, "local-hostname": self.hostname.split(".")[0]})

    def cloud_config(self) -> dict:
        config: dict = {
            "hostname": self.hostname.split(".")[0],
            "preserve_hostname": False,
            "manage_etc_hosts": True,
            "disable_root": False,
            "ssh_pwauth": bool(self.password_hash),
        }
        if "." in self.hostname:
            config["fqdn"] = self.hostname
        root = {"name": "root", "lock_passwd": not self.password_hash}
        if self.ssh_keys:
            root["ssh_authorized_keys"] = list(self.ssh_keys)
        if self.password_hash:
            root["hashed_passwd"] = self.password_hash
        config["users"] = [root]
        if self.root_password_login:
            # sshd takes the first value it reads, and Debian's and Ubuntu's sshd_config include
            # sshd_config.d/*.conf at the top; sshd is reloaded in case it started before the file was
            # written.
            config["write_files"] = [
                {"path": ROOT_LOGIN_DROP_IN, "permissions": "0644", "content": ROOT_LOGIN_CONFIG}
            ]
            config["runcmd"] = [["sh", "-c", RELOAD_SSHD]]
        return config

    def user_data_document(self) -> str:
        """Our #cloud-config, plus the customer's own user data as a second MIME part when given."""
        ours = "#cloud-config\n" + _document(self.cloud_config())
        if not self.user_data.strip():
            return ours
        message = MIMEMultipart()
        message.attach(MIMEText(ours, "cloud-config"))
        theirs = self.user_data
        subtype = "cloud-config" if theirs.lstrip().startswith("#cloud-config") else "x-shellscript"
        if theirs.lstrip().startswith("#include"):
            subtype = "x-include-url"
        message.attach(MIMEText(theirs, subtype))
        return message.as_string()

    def network_config(self) -> str | None:
        return _document(self.network.config()) if self.network else None

    def files(self) -> dict[str, bytes]:
        files = {"meta-data": self.meta_data().encode(), "user-data": self.user_data_document().encode()}
        network = self.network_config()
        if network:
            files["network-config"] = network.encode()
        return files


def build_seed_iso(config: GuestConfig) -> bytes:
    """The NoCloud seed as ISO 9660 bytes with Joliet and Rock Ridge names, volume label `cidata`."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for index, (name, content) in enumerate(sorted(config.files().items())):
        iso_name = f"/FILE{index}.;1"
        iso.add_fp(io.BytesIO(content), len(content), iso_name, rr_name=name, joliet_path=f"/{name}")
    output = io.BytesIO()
    iso.write_fp(output)
    iso.close()
    return output.getvalue()


def read_seed_iso(data: bytes) -> dict[str, bytes]:
    """The files of a seed ISO by their Rock Ridge names (for tests and diagnostics)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    files = {}
    for child in iso.list_children(rr_path="/"):
        name = child.rock_ridge.name().decode() if child.rock_ridge else ""
        if not name or name in (".", ".."):
            continue
        buffer = io.BytesIO()
        iso.get_file_from_iso_fp(buffer, rr_path=f"/{name}")
        files[name] = buffer.getvalue()
    label = iso.pvd.volume_identifier.decode().strip()
    iso.close()
    files["__label__"] = label.encode()
    return files


@dataclass(frozen=True)
class AssignedAddress:
    """One of the server's addresses as its pool describes it."""

    address: str
    network: str  # the pool's network in CIDR form, e.g. 203.0.113.0/24 or 2001:db8::/48
    prefix_length: int  # 32 (IPv4), 128 (one IPv6 address of an on-link prefix) or 64 (a routed /64)
    gateway: str
    nameservers: tuple[str, ...] = ()


def _interface_address(assigned: AssignedAddress) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """The address with the prefix the guest configures: an IPv4 address or an on-link IPv6 address takes
    its pool's network prefix; a routed /64 is configured as /64."""
    address = ipaddress.ip_address(assigned.address)
    if address.version == 6 and assigned.prefix_length == 64:
        return ipaddress.ip_interface(f"{address}/64")
    return ipaddress.ip_interface(
        f"{address}/{ipaddress.ip_network(assigned.network, strict=False).prefixlen}"
    )


def static_network(mac: str, assigned: list[AssignedAddress]) -> StaticNetwork | None:
    """The guest's network config from its addresses (the primary of each family first): every address on
    the interface, a default route per family through the gateway of that family's first address, and the
    nameservers of every pool in order, without repeats. None without addresses (the host's network
    hands them out by DHCP)."""
    if not assigned:
        return None
    interfaces = [_interface_address(item) for item in assigned]
    routes: list[Route] = []
    nameservers: list[str] = []
    for family in (4, 6):
        first = next(
            (item for item in assigned if ipaddress.ip_address(item.address).version == family), None
        )
        if first is None or not first.gateway:
            continue
        gateway = ipaddress.ip_address(first.gateway)
        # A link-local gateway (fe80::1) is on the link by definition; a global one outside every network
        # of the interface must be said to be.
        on_link = not gateway.is_link_local and not any(gateway in item.network for item in interfaces)
        routes.append(Route("0.0.0.0/0" if family == 4 else "::/0", str(gateway), on_link))
    for item in assigned:
        for server in item.nameservers:
            if server not in nameservers:
                nameservers.append(server)
    return StaticNetwork(
        mac=mac,
        addresses=[str(interface) for interface in interfaces],
        routes=routes,
        nameservers=nameservers,
    )
