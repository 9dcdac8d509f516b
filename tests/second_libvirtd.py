"""A second real libvirtd on this machine ("host2"), so that servers can migrate between two real daemons.

The system daemon (qemu:///system) and host2 share the kernel, the network namespace (host2's guests use the
system daemon's bridge `virbr0`, so host2 needs no network of its own) and QEMU, but host2 has its own
configuration, state, images and logs: it runs in a mount namespace of its own where private directories
under STATE_DIR are bind-mounted over /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
/var/log/libvirt, and in a UTS namespace with the host name `host2` (libvirt refuses to migrate between
daemons with the same host name or host UUID: "Attempt to migrate guest to the same host").

How the daemons reach each other (peer-to-peer migration: the source's daemon connects to the
destination's daemon):

- host2 listens on TCP, 127.0.0.2:16510, without authentication: `qemu+tcp://127.0.0.2:16510/system`, which
  is what the panel opens too (its `uri`) and what the system daemon uses to reach it (its `migration_uri`).
  Its migration data goes to tcp://127.0.0.2.
- The system daemon is not reconfigured (other tests restart it as it is): it is reached on
  `qemu+tcp://127.0.0.1:16512/system` through a forwarder (socat) from that port to its root socket, for
  migrations from host2 to it. Its migration data goes to tcp://127.0.0.1.

Every address and port is on the loopback (127.0.0.0/8); the TCP listeners have no authentication and
reach root's libvirt: this is a test rig for a machine where the tests run as root anyway.

Several pytest processes (make test's xdist workers) share one host2: a lock file (fcntl) lets one process
at a time start or stop it; each process that uses it holds a shared lock on USERS_LOCK until its session
ends, and the last one out stops it (a process that dies lets go of its lock with it). Nothing else is
ever stopped: the daemons' processes are found by the pid files they write.

The daemons run as `libvirtd-host2` and `virtlogd-host2` (symbolic links to the real programs), so that
`pgrep -x libvirtd` (scripts/test-services.sh, tests/chaos.py) sees the system daemon only. Stopping host2
powers off the guests it still runs (a test that failed before its clean-up); what it has defined stays in
STATE_DIR for its next start.

Two daemons in one network namespace share what one host's daemon has to itself (see QEMU_CONF for the
ports): tap devices are named vnetN by both (each takes a name no device has), and both drive the same
netfilter tables, where ebtables on nftables now and then fails a rule when the other daemon changes its
own rules at the same moment ("RULE_DELETE failed"); hypervisor.migration tries a migration refused so
again (FIREWALL_REFUSED), and on one real host the same can happen between two domains starting at once.

By hand: `.venv/bin/python -m tests.second_libvirtd start` (or `stop`, which does not wait for the tests
that use it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

NAME = "host2"
ADDRESS = "127.0.0.2"
PORT = 16510
URI = f"qemu+tcp://{ADDRESS}:{PORT}/system"
BRIDGE = "virbr0"  # the system daemon's `default` network's bridge

SYSTEM_URI = "qemu:///system"
SYSTEM_SOCKET = "/run/libvirt/libvirt-sock"
SYSTEM_ADDRESS = "127.0.0.1"
SYSTEM_PORT = 16512
SYSTEM_MIGRATION_URI = f"qemu+tcp://{SYSTEM_ADDRESS}:{SYSTEM_PORT}/system"

STATE_DIR = Path("/var/tmp/vps-host2")
RUN_DIR = Path("/run/vps-host2")  # host2's sockets and pid files, outside its private /run/libvirt
START_LOCK = STATE_DIR.parent / "vps-host2.lock"
USERS_LOCK = STATE_DIR.parent / "vps-host2.users"
LIBVIRTD_PID = RUN_DIR / "libvirtd.pid"
VIRTLOGD_PID = RUN_DIR / "virtlogd.pid"
FORWARDER_PID = RUN_DIR / "forwarder.pid"
LOG = STATE_DIR / "log" / "libvirtd.log"

# Private directory (under STATE_DIR) -> where host2 sees it.
PRIVATE = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}
START_TIMEOUT = 60.0

LIBVIRTD_CONF = f"""
# host2 (tests/second_libvirtd.py)
unix_sock_dir = "{RUN_DIR}"
host_uuid = "{{host_uuid}}"
listen_tcp = 1
listen_tls = 0
listen_addr = "{ADDRESS}"
tcp_port = "{PORT}"
auth_tcp = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

# host2's QEMU driver. Each daemon picks free ports on its own and QEMU binds them a moment later, so two
# daemons sharing one network namespace would now and then pick the same: host2 takes its consoles' and
# incoming migrations' ports from ranges the system daemon (5900 up; 49152-49215) does not reach. Incoming
# migrations listen on host2's address only. No cgroups: their directories are named after the domain's id
# and name (qemu-<id>-<name>), the same on both daemons now and then for a domain that migrates between them.
QEMU_CONF = f"""
# host2 (tests/second_libvirtd.py)
migration_address = "{ADDRESS}"
migration_port_min = 49216
migration_port_max = 49279
remote_display_port_min = 25900
remote_display_port_max = 26899
cgroup_controllers = [ ]
"""

NAMESPACE_SCRIPT = """set -e
hostname {name}
{mounts}
{bin}/virtlogd-{name} -d -p {virtlogd_pid}
exec {bin}/libvirtd-{name} -d --listen -f /etc/libvirt/libvirtd.conf -p {libvirtd_pid}
"""


@dataclass(frozen=True)
class SecondLibvirtd:
    """The URIs of the rig: host2 (as the panel registers it: `uri`, `bridge`, `migration_uri`,
    `migration_address`) and the system daemon as another host's daemon reaches it."""

    uri: str = URI
    bridge: str = BRIDGE
    migration_uri: str = URI
    migration_address: str = f"tcp://{ADDRESS}"
    system_uri: str = SYSTEM_URI
    system_migration_uri: str = SYSTEM_MIGRATION_URI
    system_migration_address: str = f"tcp://{SYSTEM_ADDRESS}"


def _answers(uri: str) -> bool:
    """Whether a libvirtd answers at the URI (a fresh connection, closed again)."""
    import libvirt

    try:
        libvirt.open(uri).close()
        return True
    except libvirt.libvirtError:
        return False


def _listening(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=2):
        return True
    return False


def _pid(path: Path) -> int | None:
    """The process whose id the pid file holds, if it is alive (a child of this process that ended is
    reaped: the forwarder, when this process started it)."""
    try:
        pid = int(path.read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    if state in ("Z", "X"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return pid


def _end(path: Path, timeout: float = 30.0) -> None:
    """End the process of a pid file (SIGTERM, then SIGKILL) and remove the file."""
    pid = _pid(path)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid(path) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid(path) is not None:
            os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)


def _host_uuid() -> str:
    """host2's host UUID: fixed, and never the system daemon's."""
    import libvirt
    from lxml import etree

    conn = libvirt.open(SYSTEM_URI)
    try:
        system = etree.fromstring(conn.getCapabilities().encode()).findtext("host/uuid")
    finally:
        conn.close()
    candidate = uuid.uuid5(uuid.NAMESPACE_DNS, f"{NAME}.vpspanel.test")
    if str(candidate) == system:
        candidate = uuid.uuid5(candidate, "again")
    return str(candidate)


def _ignore_system_state(directory: str, names: list[str]) -> set[str]:
    """What of /etc/libvirt host2 must not take: the system daemon's domains, networks, pools, secrets and
    the panel's filters of its servers (the stock network filters are kept)."""
    relative = Path(directory).relative_to("/etc/libvirt")
    if relative == Path("qemu"):
        return {name for name in names if name.endswith(".xml") or name in ("networks", "autostart")}
    if relative in (Path("storage"), Path("secrets")):
        return set(names)
    if relative == Path("nwfilter"):
        return {name for name in names if name.startswith("vps-")}
    return set()


def _prepare() -> None:
    """host2's private directories: a copy of /etc/libvirt without the system daemon's objects (made once;
    host2 keeps its own domains and pools there), its configuration written anew, QEMU's capabilities
    cache copied from the system daemon's (the same QEMU: no minute-long probe on a first start)."""
    for name in PRIVATE:
        (STATE_DIR / name).mkdir(parents=True, exist_ok=True)
    # Where host2's virtlogd writes its domains' logs and consoles (not made by a daemon on every machine).
    (STATE_DIR / "log" / "qemu").mkdir(exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    etc = STATE_DIR / "etc"
    if not (etc / "libvirtd.conf.orig").exists():
        shutil.rmtree(etc)
        shutil.copytree("/etc/libvirt", etc, ignore=_ignore_system_state, symlinks=True)
        shutil.copy2(etc / "libvirtd.conf", etc / "libvirtd.conf.orig")
        shutil.copy2(etc / "qemu.conf", etc / "qemu.conf.orig")
    conf = (etc / "libvirtd.conf.orig").read_text() + LIBVIRTD_CONF.format(host_uuid=_host_uuid())
    (etc / "libvirtd.conf").write_text(conf)
    (etc / "qemu.conf").write_text((etc / "qemu.conf.orig").read_text() + QEMU_CONF)
    capabilities = Path("/var/cache/libvirt/qemu/capabilities")
    cache = STATE_DIR / "cache" / "qemu" / "capabilities"
    if capabilities.is_dir() and not cache.exists():
        shutil.copytree(capabilities, cache)
    binaries = STATE_DIR / "bin"
    binaries.mkdir(exist_ok=True)
    for program in ("libvirtd", "virtlogd"):
        link = binaries / f"{program}-{NAME}"
        if not link.is_symlink():
            link.symlink_to(shutil.which(program) or f"/usr/sbin/{program}")


def _start_daemon() -> None:
    _end(LIBVIRTD_PID)  # a daemon that no longer answers
    _end(VIRTLOGD_PID)
    _prepare()
    mounts = "\n".join(f"mount --bind {STATE_DIR / name} {target}" for name, target in PRIVATE.items())
    script = NAMESPACE_SCRIPT.format(
        name=NAME,
        mounts=mounts,
        bin=STATE_DIR / "bin",
        virtlogd_pid=VIRTLOGD_PID,
        libvirtd_pid=LIBVIRTD_PID,
    )
    # libvirtd -d returns once the daemon is initialised; its processes keep the namespaces alive.
    started = subprocess.run(
        ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    if started.returncode != 0:
        raise RuntimeError(f"{NAME}'s libvirtd did not start: {started.stderr.strip()} (see {LOG})")
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(URI):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{NAME}'s libvirtd does not answer at {URI} (see {LOG})")
        time.sleep(0.2)


def _start_forwarder() -> None:
    """socat from SYSTEM_ADDRESS:SYSTEM_PORT to the system daemon's socket (one connection each), started
    in the background by a shell that exits at once (so that no pytest process is its parent)."""
    _end(FORWARDER_PID)
    command = (
        f"socat TCP-LISTEN:{SYSTEM_PORT},bind={SYSTEM_ADDRESS},reuseaddr,fork "
        f"UNIX-CONNECT:{SYSTEM_SOCKET} </dev/null >/dev/null 2>&1 & echo $!"
    )
    started = subprocess.run(
        ["setsid", "sh", "-c", command], capture_output=True, text=True, timeout=30, check=True
    )
    FORWARDER_PID.write_text(started.stdout.strip())
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(SYSTEM_ADDRESS, SYSTEM_PORT):
        if _pid(FORWARDER_PID) is None or time.monotonic() > deadline:
            raise RuntimeError(f"the forwarder to the system libvirtd did not start on port {SYSTEM_PORT}")
        time.sleep(0.1)


def start() -> SecondLibvirtd:
    """Start host2 and the forwarder unless they answer (call with START_LOCK held)."""
    if shutil.which("socat") is None:
        raise RuntimeError("the second libvirtd needs socat (scripts/test-services.sh installs it)")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if not _answers(URI):
        _start_daemon()
    if _pid(FORWARDER_PID) is None or not _listening(SYSTEM_ADDRESS, SYSTEM_PORT):
        _start_forwarder()
    return SecondLibvirtd()


def _destroy_domains() -> None:
    """Power off what host2 still runs (a test that failed before it cleaned up), so that no QEMU outlives
    its daemon."""
    import libvirt

    with contextlib.suppress(libvirt.libvirtError):
        conn = libvirt.open(URI)
        try:
            for domain in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                with contextlib.suppress(libvirt.libvirtError):
                    domain.destroy()
        finally:
            conn.close()


def stop() -> None:
    """Stop host2 (its guests first) and the forwarder (call with START_LOCK held)."""
    _destroy_domains()
    _end(FORWARDER_PID)
    _end(LIBVIRTD_PID)
    _end(VIRTLOGD_PID)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def in_use() -> Iterator[SecondLibvirtd]:
    """host2 running while the block runs; stopped after it unless another process uses it still."""
    with _locked(START_LOCK):
        rig = start()
        users = open(USERS_LOCK, "a")  # noqa: SIM115 (held until the block ends)
        fcntl.flock(users, fcntl.LOCK_SH)
    try:
        yield rig
    finally:
        with _locked(START_LOCK):
            fcntl.flock(users, fcntl.LOCK_UN)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another process still uses it: the last one stops it
            else:
                stop()
            finally:
                users.close()


@pytest.fixture(scope="session")
def second_libvirtd() -> Iterator[SecondLibvirtd]:
    """host2 and the system daemon's migration URI (see the module); import it into a test module."""
    with in_use() as rig:
        yield rig


# Hosts and domains for the migration tests.


def register_hosts(rig: SecondLibvirtd, region=None):
    """The system daemon (on its libvirt network `default`) and host2 (on the bridge virbr0) as two probed,
    ready hosts of one region, each with the URI and address the other's daemon migrates to
    (QEMU emulation, as everywhere in the tests)."""
    from hypervisor.models import Host
    from tests import factories

    region = region or factories.make_region()
    system = factories.make_host(
        uri=rig.system_uri,
        region=region,
        force_emulation=True,
        migration_uri=rig.system_migration_uri,
        migration_address=rig.system_migration_address,
    )
    assert system.state == Host.State.READY, system.status_reason
    return system, register_host2(rig, region)


def register_host2(rig: SecondLibvirtd, region, name: str | None = None):
    """host2 (on the bridge virbr0) as a probed, ready host of the region, with the URI and address the
    system daemon migrates to (QEMU emulation, as everywhere in the tests)."""
    from hypervisor.models import Host
    from tests import factories

    host2 = factories.make_host(
        uri=rig.uri,
        region=region,
        name=name,
        force_emulation=True,
        bridge=rig.bridge,
        migration_uri=rig.migration_uri,
        migration_address=rig.migration_address,
    )
    assert host2.state == Host.State.READY, host2.status_reason
    return host2


SEED = b"instance-id: migration-test\n"


def tiny_request(network_filter: bool = True):
    """A domain request of 128 MiB, one vCPU and a blank 1 GiB disk (no OS needed to migrate), with a name
    and MAC of its own and, unless told otherwise, its own network filter."""
    from hypervisor.driver import DomainRequest
    from hypervisor.macs import random_mac
    from hypervisor.network_filter import FilterSpec

    server = uuid.uuid4()
    mac = random_mac()
    spec = FilterSpec(uuid=server, mac=mac, ipv4=("192.0.2.10",)) if network_filter else None
    return DomainRequest(
        uuid=server,
        name=f"vps-{server}",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
        mac=mac,
        ipv4=("192.0.2.10",),
        network_filter=spec,
    )


def define(host, request, base_path: str = "", start: bool = True) -> str:
    """The request's disk (an overlay of `base_path`, or blank), seed and domain on the host, started unless
    told otherwise; returns the disk's path."""
    from hypervisor import driver

    disk = driver.create_disk(host, request, base_path)
    seed = driver.write_seed(host, request, SEED)
    driver.define_domain(host, request, disk, seed)
    if start:
        driver.start(host, request.uuid)
    return disk


def main(argv: list[str]) -> int:
    if argv[1:] == ["start"]:
        with _locked(START_LOCK):
            print(start())
        return 0
    if argv[1:] == ["stop"]:
        with _locked(START_LOCK):
            stop()
        return 0
    print(f"usage: {argv[0]} start|stop", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
