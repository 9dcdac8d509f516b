"""A small real bootable Debian guest image for the integration tests, built from Debian packages and cached.

`build_test_image()` runs debootstrap (bookworm, the cloud kernel, cloud-init, openssh-server and the QEMU
guest agent), prepares the root filesystem for cloud-init's NoCloud datasource, copies the kernel and initrd
out of it, and turns it into an ext4 filesystem (`mkfs.ext4 -d`, nothing is mounted) stored as a qcow2 disk.
The filesystem sits directly on the disk, without a partition table, so guests boot it with the kernel and
initrd given to libvirt and `root=/dev/vda`.

Guests boot it under QEMU emulation (TCG), where every process and every Python import costs some ten times
what it costs natively: the image keeps its boot short by running only the cloud-init modules the panel's
seeds use, without ds-identify's probing, with a small initrd and without a few timers and packages a test
guest never needs (see ROOTFS_FILES, ROOTFS_LINKS and REMOVED_PACKAGES).

The result lives in `${VPSPANEL_CACHE:-/var/cache/vpspanel-test}/guest-<recipe hash>/`. A build goes into a
temporary directory next to it and is renamed into place once complete (a marker file written last); a
file lock keeps two concurrent test runs from building the same recipe twice. A cached image is returned
at once. Building needs root (debootstrap, chroot) and debootstrap, mkfs.ext4 and qemu-img.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Bump when the build steps below change in a way the recipe data does not show.
RECIPE_VERSION = 5
SUITE = "bookworm"
PACKAGES = (
    "linux-image-cloud-amd64",
    "cloud-init",
    "openssh-server",
    "systemd-sysv",
    # cloud-init's Python dependencies do not configure without it.
    "python3-cffi-backend",
    # cloud-init renders the network configuration for ifupdown on Debian; DHCP needs a client.
    "ifupdown",
    "isc-dhcp-client",
    "iproute2",
    "netbase",
    "udev",
    # fsck for the root filesystem at boot, resize2fs for cloud-init's resizefs when a disk is grown.
    "e2fsprogs",
    "dbus",
    "sudo",
    # The QEMU guest agent: the panel resets the root password through it (setUserPassword); its
    # systemd unit starts when the virtio port appears.
    "qemu-guest-agent",
)
DISK_SIZE = "2G"  # the raw filesystem is sparse; the qcow2 holds only what is used
CMDLINE = "root=/dev/vda rw console=ttyS0"
# Drivers the initrd must provide (or the kernel must have built in) to mount root=/dev/vda.
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = "/var/cache/vpspanel-test"

# Files written into the root filesystem (path relative to it: content).
ROOTFS_FILES = {
    "etc/fstab": "/dev/vda / ext4 defaults 0 1\n",
    "etc/cloud/cloud.cfg.d/90_dpkg.cfg": "datasource_list: [ NoCloud, None ]\n",
    # Host keys of the fast kinds only: an RSA key takes the emulated guest some 12 seconds at every boot.
    "etc/cloud/cloud.cfg.d/91_vpspanel-test.cfg": "ssh_genkeytypes: [ed25519, ecdsa]\n",
    # Only the cloud-init modules that what the panel writes in its seeds (and the tests' user data) use:
    # under emulation every module costs its import and its work (grub-dpkg, apt-configure, locale...).
    "etc/cloud/cloud.cfg.d/92_vpspanel-test-modules.cfg": (
        "cloud_init_modules: [migrator, seed_random, bootcmd, write-files, growpart, resizefs, set_hostname,"
        " update_hostname, update_etc_hosts, users-groups, ssh]\n"
        "cloud_config_modules: [set-passwords, runcmd]\n"
        "cloud_final_modules: [write-files-deferred, scripts-per-once, scripts-per-boot,"
        " scripts-per-instance, scripts-user, ssh-authkey-fingerprints, keys-to-console, final-message,"
        " power-state-change]\n"
    ),
    # cloud-init sets en_US.UTF-8 on Debian and fails its locale module unless the locale exists;
    # it is generated below, as in Debian's cloud images.
    "etc/locale.gen": "en_US.UTF-8 UTF-8\n",
    "etc/default/locale": "LANG=en_US.UTF-8\n",
    # The initrd is regenerated after configuration: it must load the disk drivers itself and check
    # the root filesystem (initramfs-tools cannot probe the type of a root device that does not exist
    # on the build machine, so it is named).
    "etc/initramfs-tools/modules": "".join(f"{module}\n" for module in INITRD_MODULES),
    "etc/initramfs-tools/conf.d/vpspanel-test.conf": "FSTYPE=ext4\n"
    # Only the listed drivers (and what they need), not "most": a fifth of the size, unpacked faster.
    "MODULES=list\n",
    # Each guest makes its own machine id on first boot (and cloud-init its own SSH host keys).
    "etc/machine-id": "",
    # debootstrap copies these from the build machine.
    "etc/hostname": "localhost\n",
    "etc/resolv.conf": "",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
    "ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n",
}
# Symlinks made in the root filesystem (path: target).
ROOTFS_LINKS = {
    # A login prompt on the serial console (systemd would also derive it from console=ttyS0).
    "etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service": (
        "/lib/systemd/system/serial-getty@.service"
    ),
    # With an empty machine-id systemd sees a first boot; systemd-firstboot would then prompt for a
    # locale, time zone and root password on the console and wait there.
    "etc/systemd/system/systemd-firstboot.service": "/dev/null",
    "var/lib/dbus/machine-id": "/etc/machine-id",
    # cloud-init's systemd generator runs ds-identify (a long shell script probing every datasource) at
    # every boot unless it is not executable; the datasource list is fixed above (NoCloud), so it is not.
    "usr/lib/cloud-init/ds-identify": "/dev/null",
    # Units a test guest never needs at boot.
    **{
        f"etc/systemd/system/{unit}": "/dev/null"
        for unit in (
            "e2scrub_reap.service",
            "e2scrub_all.timer",
            "apt-daily.timer",
            "apt-daily-upgrade.timer",
            "dpkg-db-backup.timer",
            "fstrim.timer",
        )
    },
}
# Packages removed after debootstrap: cloud-init only validates user data against its schema with them
# (a warning in its log at most) and importing them costs every cloud-init stage seconds under emulation.
REMOVED_PACKAGES = ("python3-jsonschema",)

MARKER = "COMPLETE"
TOOLS = ("debootstrap", "mkfs.ext4", "qemu-img", "chroot")
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class GuestImage:
    disk: Path  # qcow2, an ext4 filesystem without a partition table; use it as a backing file
    kernel: Path  # vmlinuz
    initrd: Path
    cmdline: str  # the kernel command line to boot it with


def recipe() -> dict:
    return {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "packages": sorted(PACKAGES),
        "disk_size": DISK_SIZE,
        "cmdline": CMDLINE,
        "initrd_modules": list(INITRD_MODULES),
        "files": ROOTFS_FILES,
        "links": ROOTFS_LINKS,
        "removed_packages": list(REMOVED_PACKAGES),
    }


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("VPSPANEL_CACHE") or DEFAULT_CACHE)


def build_test_image() -> GuestImage:
    """The cached test image, built first when the cache does not hold a complete one for this recipe."""
    root = cache_root()
    name = f"guest-{recipe_hash()}"
    final = root / name
    if (final / MARKER).is_file():
        return _image_in(final)

    tools = _check_prerequisites()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (final / MARKER).is_file():  # another process built it while we waited
            return _image_in(final)
        for stale in root.glob(f".{name}.tmp-*"):  # left by a build that was killed
            _remove_tree(stale)
        if final.exists():  # incomplete, from an interrupted rename; never happens with a marker
            _remove_tree(final)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            started = time.monotonic()
            _build(work, tools)
            os.chmod(work, 0o755)
            (work / MARKER).write_text(f"built in {time.monotonic() - started:.0f} s\n")
            os.rename(work, final)
        except BaseException:
            _remove_tree(work)
            raise
    return _image_in(final)


def _image_in(directory: Path) -> GuestImage:
    return GuestImage(
        disk=directory / "disk.qcow2",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        cmdline=(directory / "cmdline").read_text().strip(),
    )


def _check_prerequisites() -> dict[str, str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("root privileges (debootstrap and chroot need them)")
    search_path = os.pathsep.join([os.environ.get("PATH", ""), SBIN_PATH])
    tools = {tool: shutil.which(tool, path=search_path) for tool in TOOLS}
    missing = [tool for tool, path in tools.items() if path is None]
    if missing:
        problems.append(
            f"the command(s) {', '.join(missing)} "
            "(apt-get install debootstrap e2fsprogs qemu-utils; scripts/test-services.sh does it)"
        )
    if problems:
        raise RuntimeError("Cannot build the test guest image: missing " + " and ".join(problems) + ".")
    return tools


def _build(work: Path, tools: dict[str, str]) -> None:
    rootfs = work / "rootfs"
    mirror = debian_mirror()
    packages = ",".join(PACKAGES)
    log.info("debootstrap %s from %s into %s", SUITE, mirror, rootfs)
    _run(
        [tools["debootstrap"], "--variant=minbase", f"--include={packages}", SUITE, str(rootfs), mirror],
        work / "debootstrap.out",
        extra_log=rootfs / "debootstrap" / "debootstrap.log",
    )
    _configure(rootfs)
    _run([tools["chroot"], str(rootfs), "locale-gen"], work / "locale-gen.out")
    remove = [tools["chroot"], str(rootfs), "dpkg", "--purge", "--force-depends", *REMOVED_PACKAGES]
    _run(remove, work / "dpkg-purge.out")
    version = _kernel_version(rootfs)
    _regenerate_initrd(rootfs, version, tools, work)
    shutil.copyfile(rootfs / "boot" / f"vmlinuz-{version}", work / "vmlinuz")
    shutil.copyfile(rootfs / "boot" / f"initrd.img-{version}", work / "initrd.img")
    (work / "cmdline").write_text(CMDLINE + "\n")
    (work / "recipe.json").write_text(json.dumps({**recipe(), "mirror": mirror, "kernel": version}, indent=2))

    raw = work / "rootfs.raw"
    mkfs = [tools["mkfs.ext4"], "-q", "-F", "-d", str(rootfs), "-L", "rootfs", str(raw), DISK_SIZE]
    _run(mkfs, work / "mkfs.out")
    _remove_tree(rootfs)
    disk = work / "disk.qcow2"
    _run([tools["qemu-img"], "convert", "-O", "qcow2", str(raw), str(disk)], work / "convert.out")
    raw.unlink()
    for path in work.iterdir():
        os.chmod(path, 0o644)


def _configure(rootfs: Path) -> None:
    for relative, content in ROOTFS_FILES.items():
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(content)
    for relative, target in ROOTFS_LINKS.items():
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
    # SSH host keys made while the package was configured: every guest must make its own.
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Root keeps a locked password ("*" from debootstrap): no password is set for it.
    # Downloaded packages and package lists are not needed in the image.
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for path in rootfs.glob(pattern):
            path.unlink()


def _kernel_version(rootfs: Path) -> str:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise RuntimeError(f"debootstrap installed no kernel in {rootfs / 'boot'}")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    if not (rootfs / "boot" / f"initrd.img-{version}").is_file():
        raise RuntimeError(f"no initrd.img-{version} in {rootfs / 'boot'}")
    return version


def _missing_initrd_modules(rootfs: Path, version: str, tools: dict[str, str]) -> list[str]:
    listing = subprocess.run(
        [tools["chroot"], str(rootfs), "lsinitramfs", f"/boot/initrd.img-{version}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PATH": SBIN_PATH},
    ).stdout
    builtin_file = rootfs / "lib" / "modules" / version / "modules.builtin"
    builtin = builtin_file.read_text() if builtin_file.is_file() else ""
    missing = []
    for module in INITRD_MODULES:
        pattern = re.compile(rf"/{re.escape(module)}\.ko(\.\w+)?$", re.MULTILINE)
        if not pattern.search(listing) and not pattern.search(builtin):
            missing.append(module)
    return missing


def _regenerate_initrd(rootfs: Path, version: str, tools: dict[str, str], work: Path) -> None:
    _run([tools["chroot"], str(rootfs), "update-initramfs", "-u", "-k", version], work / "initramfs.out")
    missing = _missing_initrd_modules(rootfs, version, tools)
    if missing:
        raise RuntimeError(f"the initrd of kernel {version} lacks {', '.join(missing)}")


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses for SUITE (so builds work where only it is reachable)."""
    override = os.environ.get("VPSPANEL_DEBIAN_MIRROR")
    if override:
        return override
    apt = Path("/etc/apt")
    sources: list[tuple[str, list[str], list[str]]] = []  # (uri, suites, components)
    one_line_files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in one_line_files:
        if path.is_file():
            sources.extend(_one_line_sources(path.read_text()))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        sources.extend(_deb822_sources(path.read_text()))
    for uri, suites, components in sources:
        if SUITE in suites and "main" in components:
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _one_line_sources(text: str):
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 4 and line[0] == "deb":
            yield line[1], [line[2]], line[3:]


def _deb822_sources(text: str):
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        components = fields.get("components", "").split()
        for uri in fields.get("uris", "").split():
            yield uri, suites, components


def _run(command: list[str], output: Path, extra_log: Path | None = None) -> None:
    started = time.monotonic()
    with open(output, "w") as out:
        result = subprocess.run(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PATH": SBIN_PATH, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"},
        )
    log.info("%s took %.0f s", Path(command[0]).name, time.monotonic() - started)
    if result.returncode != 0:
        text = output.read_text(errors="replace")
        if extra_log is not None and extra_log.is_file():
            text += "\n" + extra_log.read_text(errors="replace")
        tail = "\n".join(text.splitlines()[-30:])
        raise RuntimeError(f"{' '.join(command)} failed with exit status {result.returncode}:\n{tail}")


def _remove_tree(path: Path) -> None:
    """Remove a build directory, first unmounting anything a killed debootstrap left mounted below it."""
    if not path.exists():
        return
    prefix = str(path.resolve()) + "/"
    mounts = []
    with open("/proc/self/mounts") as table:
        for line in table:
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix):
                mounts.append(target)
    for target in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, env={**os.environ, "PATH": SBIN_PATH})
    shutil.rmtree(path)
