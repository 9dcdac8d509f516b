"""The whole life of a real guest on the real libvirtd, with backups kept off the host in a directory over
SSH. The ordered server boots (direct kernel boot, QEMU emulation as on this machine) with the cloud-init
seed the panel built: its hostname, SSH key and static addresses (its IPv4 address and its routed IPv6 /64
in cloud-init's network table). The guest writes a marker through its user data and is backed up while it
runs (full), changes a little and is backed up again (incremental, copying much less); it is rebuilt (the
marker gone from its disk), restored from the incremental backup (the chain assembled) and boots with the
marker; a new server made from the full backup meanwhile boots with it too, and shuts down through ACPI.
Each boot prints the marker it finds (cloud-init's bootcmd runs at every boot) on the serial console, which
the host logs per domain start."""

import base64
import hashlib
import json
import re
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import libvirt_qemu
import pytest
from django.db import connection

from hypervisor import images, ipam
from panel.backups import policies
from panel.models import Backup, Operation, Server
from panel.servers import actions
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
URI = "qemu:///system"
BOOT_TIMEOUT = 240

# The marker is written once (a restored disk keeps its own); every boot prints what it finds.
PRINT = "m=$(cat /root/marker || echo none); c=$(cat /root/change || echo none)"
USER_DATA = (
    "#cloud-config\n"
    "bootcmd:\n"
    f'  - [sh, -c, "{PRINT}; echo MARKER=$m CHANGE=$c > /dev/ttyS0"]\n'
    "runcmd:\n"
    '  - [sh, -c, "[ -f /root/marker ] || echo {marker} > /root/marker; sync; '
    'echo MARKER-WRITTEN=$(cat /root/marker) > /dev/ttyS0"]\n'
)


def sha256_fingerprint_hex(public_key: str) -> str:
    """How cloud-init prints an authorized key's fingerprint on the console (sha256, colon-separated)."""
    digest = hashlib.sha256(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def console_of(server: Server) -> Path:
    return Path(f"/var/log/libvirt/qemu/{server.domain_name}-console.log")


def wait_for_console(path: Path, *patterns: str, timeout: float = BOOT_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if all(re.search(pattern, text) for pattern in patterns):
            return text
        time.sleep(0.5)
    missing = [pattern for pattern in patterns if not re.search(pattern, text)]
    pytest.fail(f"the console never showed {missing}; last lines:\n" + "\n".join(text.splitlines()[-30:]))


def agent_exec(conn: libvirt.virConnect, server: Server, command: str) -> None:
    """Run a shell command in the guest through the QEMU guest agent (guest-exec)."""
    domain = conn.lookupByUUIDString(str(server.id))
    request = {"execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", command]}}
    deadline = time.monotonic() + 120
    while True:
        try:
            answer = json.loads(libvirt_qemu.qemuAgentCommand(domain, json.dumps(request), 30, 0))
            break
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    pid = answer["return"]["pid"]
    status = {"execute": "guest-exec-status", "arguments": {"pid": pid}}
    while not json.loads(libvirt_qemu.qemuAgentCommand(domain, json.dumps(status), 30, 0))["return"][
        "exited"
    ]:
        time.sleep(0.2)


def run_in_thread(operation: Operation) -> Operation:
    """Run the operation in this thread as a worker does, with a database connection of its own."""
    try:
        return run(operation)
    finally:
        connection.close()


def disk_of(conn: libvirt.virConnect, server: Server) -> str:
    return conn.storagePoolLookupByName("default").storageVolLookupByName(f"{server.id}.qcow2").path()


def read_file(disk: str, path: str) -> str | None:
    """A file of the guest's root filesystem (ext4 on the whole disk), read off the qcow2 disk and its
    backing chain while the guest runs; None when it does not exist."""
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "disk.raw"
        subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", disk, str(raw)], check=True, timeout=120)
        result = subprocess.run(
            ["debugfs", "-R", f"cat {path}", str(raw)], capture_output=True, text=True, timeout=60
        )
    return None if "File not found" in result.stderr else result.stdout


def run(operation: Operation) -> Operation:
    operation = factories.run_operation(operation)
    assert operation.status == "succeeded", (operation.error, operation.detail)
    return operation


def test_a_running_server_is_backed_up_rebuilt_restored_and_cloned_with_its_marker(
    guest_image, customer, settings, ssh_backup_target, libvirtd
):
    target, directory = ssh_backup_target
    settings.SHUTDOWN_TIMEOUT = 30
    settings.IMAGE_DIR = guest_image.disk.parent
    region = factories.make_region()
    factories.make_host(uri=URI, region=region, force_emulation=True)
    pool = ipam.create_pool(
        region, "test", "192.168.122.0/24", "192.168.122.1",
        nameservers=["192.168.122.1"], excluded=["192.168.122.2-192.168.122.189"],
    )  # fmt: skip
    ipam.create_pool(region, "test-v6", "fd00:5eed::/56", "fe80::1")  # a /64 routed to each server
    region.backup_target = target
    region.save()
    image = images.register_image(
        "debian-test", str(guest_image.disk), name="Debian test", os_family="debian",
        kernel=str(guest_image.kernel), initrd=str(guest_image.initrd), cmdline=guest_image.cmdline,
    )  # fmt: skip
    plan = factories.make_plan(slug="backed", vcpus=1, memory_mib=512, disk_gib=3)
    marker = f"marker-{uuid.uuid4().hex[:12]}"
    key = factories.make_ssh_key(customer)
    servers = []
    try:
        server = actions.order_server(
            customer, name="toko.example.id", plan=plan, image=image, region=region, ssh_keys=[key],
            password="a good root password", user_data=USER_DATA.format(marker=marker),
        )  # fmt: skip
        servers.append(server)
        run(Operation.objects.get(server=server, type="create"))
        server.refresh_from_db()
        assert server.status == "running", server.status_reason
        address = server.ipv4[0]
        assert address.startswith("192.168.122.") and pool.addresses.filter(address=address).exists()
        (ipv6,) = server.ipv6
        assert ipv6.startswith("fd00:5eed:") and ipv6.endswith("::1")
        text = wait_for_console(
            console_of(server),
            r"toko login:",
            r"Cloud-init v\. \S+ finished at .*DataSourceNoCloud",
            re.escape(sha256_fingerprint_hex(key.public_key)),
            re.escape(address),
            # cloud-init's "Net device info" table: eth0 with the server's IPv6 address as a /64
            r"eth0\s*\|\s*True\s*\|\s*" + re.escape(ipv6) + r"/64",
            rf"MARKER-WRITTEN={marker}",
        )
        assert "Authorized keys from /root/.ssh/authorized_keys for user root" in text
        policies.update_policy(server, customer, enabled=True, schedule="daily", retention=3)

        # A full backup while it runs: the server keeps running; the file is on the backup server only.
        full_operation = run(actions.perform(server, "backup", customer, {}))
        full = Backup.objects.get(operation=full_operation)
        server.refresh_from_db()
        assert (server.status, server.task) == ("running", None)
        assert (full.status, full.kind) == ("succeeded", "full")
        assert (directory / full.location).stat().st_size == full.size_bytes > 0
        assert full_operation.progress["percent"] == 100

        # A new server is made from the full backup by a worker meanwhile (two guests boot at once), from
        # now until the server is restored.
        clone = actions.order_server(
            customer, name="toko-copy", plan=plan, region=region, backup=full,
            user_data=USER_DATA.format(marker="not-this-one"),
        )  # fmt: skip
        servers.append(clone)
        with ThreadPoolExecutor(1) as worker:
            cloning = worker.submit(run_in_thread, Operation.objects.get(server=clone, type="create"))

            # A small change, then an incremental backup: it copies much less than the full one.
            agent_exec(libvirtd, server, "echo changed > /root/change; sync")
            incremental = Backup.objects.get(operation=run(actions.perform(server, "backup", customer, {})))
            assert (incremental.status, incremental.kind, incremental.parent_id) == (
                "succeeded",
                "incremental",
                full.pk,
            )
            assert incremental.copied_bytes * 10 < full.copied_bytes, (
                incremental.copied_bytes,
                full.copied_bytes,
            )
            assert incremental.size_bytes * 10 < full.size_bytes
            print(f"full copied {full.copied_bytes} bytes ({full.size_bytes} compressed); incremental "
                  f"copied {incremental.copied_bytes} ({incremental.size_bytes} compressed)")  # fmt: skip

            # Rebuilt: a fresh disk from the image, the marker gone (read off the disk, not booted for).
            run(actions.perform(server, "rebuild", customer, {"image": image.slug}))
            assert read_file(disk_of(libvirtd, server), "/root/marker") is None

            # Restored from the incremental backup: the same address; it boots with the marker and the change.
            run(actions.perform(server, "restore_backup", customer, {"backup": incremental.pk}))
            server.refresh_from_db()
            assert (server.status, server.ipv4[0]) == ("running", address)
            wait_for_console(console_of(server), rf"MARKER={marker} CHANGE=changed")
            assert cloning.result().status == "succeeded"

        # The new server boots with the marker too, with its own name and address.
        clone.refresh_from_db()
        assert clone.status == "running" and clone.ipv4[0] != address
        wait_for_console(console_of(clone), rf"MARKER={marker} CHANGE=none", r"toko-copy login:")

        # A graceful shutdown reaches the guest through ACPI.
        run(actions.request_action(clone, "shutdown", customer))
        clone.refresh_from_db()
        assert (clone.status, clone.status_reason) == ("stopped", None)
    finally:
        for each in servers:
            each.refresh_from_db()
            if each.task is None and each.status != "deleted":
                factories.run_operation(actions.delete_server(each, customer))
        for name in [
            images.volume_name(image, kind, checksum) for kind, _path, checksum in images.files_of(image)
        ]:
            try:
                libvirtd.storagePoolLookupByName("default").storageVolLookupByName(name).delete(0)
            except libvirt.libvirtError:
                pass
