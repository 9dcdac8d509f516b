"""Password reset and rescue mode on the real libvirtd with a real Debian guest (tests/guest_image.py, which
has the QEMU guest agent), on a remote host reached through qemu+ssh:// (a private sshd with the panel's
key), with every console session through the console proxy's websocket, in one test to keep the suite short:

1. the serial console shows the guest's login prompt; the root password is reset through the guest agent
   (virDomainSetUserPassword), and root logs in with it on the serial console, then leaves a marker file on
   the server's disk;
2. rescue mode boots the rescue system (registered as an image of purpose rescue: the same test image) from
   a throwaway overlay with the server's disk attached as /dev/vdb: root logs in with the one-time password
   on the console and over SSH, and the rescue system reads the marker from the server's disk;
3. leaving rescue mode boots the server from its own disk again: its hostname, the reset password, the
   marker and what the rescue system wrote are there, and rescue mode's volumes are gone.

Every boot's cloud-init finishes (its final message on the console) before the next step changes the
server; the test works at the login prompt meanwhile, as cloud-init's last two stages run after it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import libvirt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hypervisor import images, ipam
from hypervisor.models import Image
from panel.models import Operation
from panel.servers import actions, operations
from tests import factories
from tests.console_proxy import running_proxy
from tests.real_workers import remove_leftovers, volumes_of

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
BOOT_TIMEOUT = 240
COMMAND_TIMEOUT = 60
# Terminal control sequences (bash's bracketed paste mode, colours), left out of what the console showed.
CONTROL_SEQUENCES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CLOUD_INIT_FINISHED = r"Cloud-init v\. \S+ finished"


class SerialConsole:
    """The guest's serial console through the console proxy: a token from `POST servers/{id}/console/`, then
    the websocket (raw bytes both ways), read whenever the test waits for what the guest prints."""

    def __init__(self, websocket: ClientConnection):
        self.websocket = websocket
        self.raw = ""
        self.text = ""  # without control sequences
        self.seen = 0  # what wait_for has consumed
        self.ended = False

    def _drain(self) -> None:
        while not self.ended:
            try:
                data = self.websocket.recv(timeout=0.05)
            except TimeoutError:  # nothing more for now
                break
            except ConnectionClosed:
                self.ended = True
                break
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            self.raw += text.replace("\r", "")
        self.text = CONTROL_SEQUENCES.sub("", self.raw)

    def type(self, text: str) -> None:
        self.websocket.send(text.encode())

    def wait_for(self, pattern: str, timeout: float, nudge: float | None = None) -> re.Match:
        """The first match of `pattern` in what the guest printed since the last match; with `nudge`, a
        newline is typed at once when it is not there, then every that many seconds (a login prompt
        printed before the console was open, or before the last match, is printed again)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        nudged = None
        while time.monotonic() < deadline:
            self._drain()
            match = regex.search(self.text, self.seen)
            if match:
                self.seen = match.end()
                return match
            if self.ended:
                break
            if nudge is not None and (nudged is None or time.monotonic() - nudged > nudge):
                self.type("\n")
                nudged = time.monotonic()
            time.sleep(0.1)
        tail = "\n".join(self.text[self.seen :].splitlines()[-40:])
        pytest.fail(f"the console never showed {pattern!r}; since the last match:\n{tail}")

    def showed(self, pattern: str, timeout: float) -> None:
        """Wait until `pattern` is anywhere in what the guest printed since the console was opened (what
        was matched and typed meanwhile included)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while not regex.search(self.text):
            if self.ended or time.monotonic() > deadline:
                pytest.fail(f"the console never showed {pattern!r}:\n{self.text[-3000:]}")
            time.sleep(0.1)
            self._drain()

    def cloud_init_finished(self) -> None:
        """Wait for cloud-init to have finished this boot. Its last two stages (the config modules and the
        final message) run after the login prompt: the test logs in and works meanwhile, and checks this
        before the next step changes the server. The hostname and the passwords cloud-init is given are
        set before the prompt (cloud-init.service runs before systemd-user-sessions.service)."""
        self.showed(CLOUD_INIT_FINISHED, BOOT_TIMEOUT)

    def log_in(self, hostname: str, password: str) -> None:
        self.wait_for(rf"{hostname} login:", COMMAND_TIMEOUT, nudge=5)
        self.type("root\n")
        self.wait_for(r"Password:", COMMAND_TIMEOUT)
        self.type(password + "\n")
        self.wait_for(rf"root@{hostname}:~# ", COMMAND_TIMEOUT)

    def run(self, command: str) -> str:
        """Run a shell command; what the console showed meanwhile (the command line and its output)."""
        number = 10000 + time.monotonic_ns() % 80000
        self._drain()
        start = len(self.text)
        # The end marker is computed by the shell, so the echoed command line never matches it.
        self.type(f"{command}; echo END$((0+{number}))\n")
        match = self.wait_for(rf"\nEND{number}\n", COMMAND_TIMEOUT)
        return self.text[start : match.start()]


def ssh(address: str, password: str, command: str) -> subprocess.CompletedProcess:
    """`command` run as root over SSH with a password (OpenSSH reads it from an askpass program)."""
    with tempfile.TemporaryDirectory() as directory:
        askpass = Path(directory) / "askpass"
        askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$RESCUE_PASSWORD"\n')
        askpass.chmod(stat.S_IRWXU)
        env = {
            **os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0",
            "RESCUE_PASSWORD": password,
        }  # fmt: skip
        return subprocess.run(
            [
                "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                "-o", "ConnectTimeout=5", "-o", "NumberOfPasswordPrompts=1", f"root@{address}", command,
            ],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        )  # fmt: skip


def execute(operation: Operation) -> Operation:
    operations.execute(str(operation.pk))
    operation.refresh_from_db()
    assert operation.status == "succeeded", f"{operation.type}: {operation.error} / {operation.detail}"
    assert "password" not in operation.params
    return operation


@pytest.fixture
def proxy(ssh_host, settings, tmp_path):
    with running_proxy(settings, tmp_path) as url:  # after ssh_host: the proxy shares its data directory
        yield url


def test_a_reset_password_logs_in_and_rescue_mode_sees_the_servers_disk_and_returns(
    guest_image, customer, libvirtd, ssh_host, proxy, settings, api
):
    settings.SHUTDOWN_TIMEOUT = 60
    settings.IMAGE_DIR = guest_image.disk.parent  # the cached build's directory holds all three files
    # QEMU emulation, as the other real guests here (KVM inside this machine's own virtual machine fails).
    host, region = ssh_host, ssh_host.region
    ipam.create_pool(
        region, "test", "192.168.122.0/24", "192.168.122.1",
        nameservers=["192.168.122.1"], excluded=["192.168.122.2-192.168.122.236"],
    )  # fmt: skip
    files = {
        "kernel": str(guest_image.kernel),
        "initrd": str(guest_image.initrd),
        "cmdline": guest_image.cmdline,
    }
    image = images.register_image(
        "debian-agent", str(guest_image.disk), name="Debian test", os_family="debian", **files
    )
    rescue_image = images.register_image(
        "rescue-test", str(guest_image.disk), name="Rescue", os_family="debian", purpose=Image.Purpose.RESCUE,
        **files,
    )  # fmt: skip
    plan = factories.make_plan(slug="rescue", vcpus=1, memory_mib=512, disk_gib=3)
    server = actions.order_server(customer, name="toko", plan=plan, image=image, region=region)
    consoles = contextlib.ExitStack()  # the websockets, closed at the end

    def console() -> SerialConsole:
        opened = api(customer).post(
            f"/api/v1/servers/{server.id}/console/", {"type": "serial"}, format="json"
        )
        assert opened.status_code == 201, opened.content
        return SerialConsole(consoles.enter_context(connect(opened.json()["url"], open_timeout=15)))

    try:
        execute(Operation.objects.get(server=server, type="create"))
        first = console()
        server.refresh_from_db()
        address = server.ipv4[0]

        # 1. The guest's login prompt on its serial console; a new root password through the guest agent,
        # and root logs in with it on the serial console.
        first.wait_for(r"toko login:", BOOT_TIMEOUT)
        reset = actions.reset_password(server, customer, "a new root password")
        assert reset.one_time_password == "a new root password"
        execute(reset)
        first.log_in("toko", "a new root password")
        assert "/dev/vda" in first.run("findmnt -n -o SOURCE /")
        first.run("echo before-rescue > /root/marker && sync")
        first.cloud_init_finished()

        # 2. Rescue mode: the rescue system, with the server's disk as /dev/vdb.
        rescue = actions.rescue_server(server, customer)
        one_time = rescue.one_time_password
        execute(rescue)
        server.refresh_from_db()
        assert (server.status, server.power_state) == ("rescue", "running")
        assert {Path(p).name for p in volumes_of(libvirtd, str(server.id))} >= {
            f"{server.id}-rescue.qcow2", f"{server.id}-rescue-seed.iso",
        }  # fmt: skip
        in_rescue = console()
        in_rescue.wait_for(r"rescue login:", BOOT_TIMEOUT)
        in_rescue.log_in("rescue", one_time)
        assert "/dev/vda" in in_rescue.run("findmnt -n -o SOURCE /")
        assert 'LABEL="rootfs"' in in_rescue.run("blkid /dev/vdb")
        seen = in_rescue.run(
            "mount /dev/vdb /mnt && cat /mnt/root/marker && echo from-rescue > /mnt/root/rescued"
        )
        assert "before-rescue" in seen
        in_rescue.run("umount /mnt && sync")
        # SSH lets root in with the one-time password too (the rescue seed allows it).
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            answer = ssh(address, one_time, "hostname; lsblk -n -o NAME /dev/vdb")
            if answer.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.split() == ["rescue", "vdb"]
        in_rescue.cloud_init_finished()

        # 3. Leaving rescue mode boots the server from its own disk, as it was.
        execute(actions.unrescue_server(server, customer))
        server.refresh_from_db()
        assert (server.status, server.power_state, server.task) == ("running", "running", None)
        again = console()
        again.wait_for(r"toko login:", BOOT_TIMEOUT)
        again.log_in("toko", "a new root password")
        assert "/dev/vda" in again.run("findmnt -n -o SOURCE /")
        seen = again.run("cat /root/marker /root/rescued")
        assert "before-rescue" in seen and "from-rescue" in seen
        assert {Path(p).name for p in volumes_of(libvirtd, str(server.id))} == {
            f"{server.id}.qcow2", f"{server.id}-seed.iso",
        }  # fmt: skip
        again.cloud_init_finished()
    finally:
        consoles.close()
        remove_leftovers(libvirtd, str(server.id))  # before the base volumes it is made of
        for each in (image, rescue_image):
            for kind, _path, checksum in images.files_of(each):
                try:
                    pool = libvirtd.storagePoolLookupByName(host.storage_pool)
                    pool.storageVolLookupByName(images.volume_name(each, kind, checksum)).delete(0)
                except libvirt.libvirtError:
                    pass
