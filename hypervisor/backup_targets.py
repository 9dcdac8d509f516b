"""Where backups are kept (hypervisor.models.BackupTarget): a storage pool on a registered host, reached
through libvirt streams, or a directory on a server reached over SSH with the panel's key, which accepts
only the host keys recorded when the target was added.

A file is stored while its sha256 is taken, then read back ON the target (the host_pool volume through
libvirt, `sha256sum` over SSH) and compared: a mismatch or failure removes it. Over SSH the bytes go to
NAME.partial, renamed to NAME only once verified: a killed copy never leaves a file under the final name.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.utils import timezone

from . import backup_images, credentials, disk_backup
from .connection import READABLE, HypervisorError
from .models import BackupTarget

SSH_TIMEOUT = 60.0  # seconds for a short command over SSH (sha256sum of a large file gets VERIFY_TIMEOUT)
VERIFY_TIMEOUT = 3600.0
COPY_TIMEOUT = 6 * 3600.0  # seconds ssh may take to finish writing after the last chunk
CHUNK = 1 << 20
PARTIAL = ".partial"
WRITE_CHECK = "vpspanel-write-check"


@dataclass
class StoredFile:
    """A file on a target: its name there, its size in bytes and the sha256 (hex) of its bytes."""

    name: str
    size: int
    sha256: str


@dataclass
class CheckResult:
    """Whether the panel can write to the target; `reason` says why not."""

    ok: bool
    reason: str = ""


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(("-", ".")) or "\n" in name or "\0" in name:
        raise HypervisorError(f"not a backup file name: {name!r}")


def _pool_args(target: BackupTarget) -> tuple:
    if target.host is None:
        raise HypervisorError(f"the backup target {target.name} has no host")
    return target.host, target.pool or "vpspanel-backups", target.pool_path


def _simulated(target: BackupTarget) -> bool:
    return (
        target.kind == BackupTarget.Kind.HOST_POOL
        and target.host is not None
        and (target.host.transport == "test")
    )


# SSH


def split_address(address: str) -> tuple[str, str]:
    """(user, host) of "user@host" (user root when none is given); HypervisorError for what could be read
    as an option."""
    user, _, host = address.rpartition("@")
    user = user or "root"
    if not host or host.startswith("-") or user.startswith("-") or any(c.isspace() for c in address):
        raise HypervisorError(f"not an SSH address: {address!r}")
    return user, host


def _directory(target: BackupTarget) -> str:
    directory = (target.directory or "").rstrip("/") or "/"
    if not directory.startswith("/") or "\n" in directory or "\0" in directory:
        raise HypervisorError(f"the backup directory must be an absolute path, not {target.directory!r}")
    return directory


def _remote_path(target: BackupTarget, name: str) -> str:
    _check_name(name)
    return f"{_directory(target).rstrip('/')}/{name}"


def _ssh_command(target: BackupTarget, remote: str) -> list[str]:
    user, host = split_address(target.ssh_address)
    directory = credentials.private_dir("backup-targets", str(target.pk or "new"))
    key_file, options = credentials.ssh_key_files(directory, target.ssh_host_keys)
    return ["ssh", *options, "-i", str(key_file), "-p", str(target.ssh_port or 22), "-l", user,
            "--", host, remote]  # fmt: skip


def _readable(stderr: str, target: BackupTarget) -> str:
    text = (stderr or "").strip()
    _user, host = split_address(target.ssh_address)
    for needle, readable in READABLE:
        if needle in text:
            return readable.format(target=f"{host}:{target.ssh_port or 22}")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the command failed"


def _ssh(target: BackupTarget, remote: str, timeout: float = SSH_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a shell command on the backup server; HypervisorError when ssh cannot run it (exit 255) or it
    did not end within `timeout` seconds. Other exit codes are the caller's to read."""
    try:
        result = subprocess.run(
            _ssh_command(target, remote),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise HypervisorError(f"the backup server did not answer within {timeout:g} seconds", True) from exc
    if result.returncode == 255:
        raise HypervisorError(_readable(result.stderr, target), transient=True)
    return result


def _ssh_ok(target: BackupTarget, remote: str, what: str, timeout: float = SSH_TIMEOUT) -> str:
    result = _ssh(target, remote, timeout)
    if result.returncode != 0:
        raise HypervisorError(f"{what} failed on the backup server: {_readable(result.stderr, target)}")
    return result.stdout


def _ssh_sha256(target: BackupTarget, path: str) -> str:
    out = _ssh_ok(target, f"sha256sum -- {shlex.quote(path)}", "sha256sum", VERIFY_TIMEOUT)
    return out.split()[0] if out.split() else ""


def _ssh_store(target: BackupTarget, name: str, chunks: Iterable[bytes]) -> StoredFile:
    directory = _directory(target)
    final = _remote_path(target, name)
    partial = final + PARTIAL
    remote = f"mkdir -p -- {shlex.quote(directory)} && cat > {shlex.quote(partial)}"
    digest, size = hashlib.sha256(), 0
    process = subprocess.Popen(
        _ssh_command(target, remote), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                process.stdin.write(chunk)
            process.stdin.close()
        except BrokenPipeError:
            pass  # ssh ended early: its exit status and message say why
        try:
            process.wait(timeout=COPY_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise HypervisorError("the copy to the backup server did not finish", True) from exc
        stderr = process.stderr.read().decode(errors="replace")
        if process.returncode != 0:
            raise HypervisorError(
                f"writing {name} to the backup server failed: {_readable(stderr, target)}",
                transient=process.returncode == 255,
            )
        stored = StoredFile(name=name, size=size, sha256=digest.hexdigest())
        _verify_ssh_path(target, partial, stored)
        _ssh_ok(target, f"mv -f -- {shlex.quote(partial)} {shlex.quote(final)}", "mv")
        return stored
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        try:
            _ssh(target, f"rm -f -- {shlex.quote(partial)}")
        except HypervisorError:
            pass  # the file is removed with the backup later (delete removes NAME.partial too)
        raise
    finally:
        if process.stdin and not process.stdin.closed:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
        if process.stderr:
            process.stderr.close()


def _verify_ssh_path(target: BackupTarget, path: str, stored: StoredFile) -> None:
    found = _ssh_sha256(target, path)
    if found != stored.sha256:
        raise HypervisorError(
            f"{stored.name} on the backup server does not match what was sent (sha256 {found or 'unknown'})"
        )


def _ssh_fetch(target: BackupTarget, name: str) -> Iterator[bytes]:
    path = _remote_path(target, name)
    process = subprocess.Popen(
        _ssh_command(target, f"cat -- {shlex.quote(path)}"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    finished = False
    try:
        while True:
            data = process.stdout.read(CHUNK)
            if not data:
                break
            yield data
        process.wait(timeout=SSH_TIMEOUT)
        stderr = process.stderr.read().decode(errors="replace")
        if process.returncode != 0:
            raise HypervisorError(
                f"reading {name} from the backup server failed: {_readable(stderr, target)}",
                transient=process.returncode == 255,
            )
        finished = True
    finally:
        if not finished and process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


# The public interface


def store(target: BackupTarget, name: str, chunks: Iterable[bytes]) -> StoredFile:
    """Write the chunks to the target as `name` (replacing a file of that name), counting and hashing them,
    then verify the copy on the target; HypervisorError (and no file left) when writing or verifying
    fails. A simulated target host gets an empty volume of that name (the size and sha256 returned are
    those of the bytes given)."""
    _check_name(name)
    if target.kind == BackupTarget.Kind.SSH:
        return _ssh_store(target, name, chunks)
    host, pool, pool_path = _pool_args(target)
    digest = hashlib.sha256()
    size = disk_backup.upload(host, pool, pool_path, name, backup_images.tap(chunks, digest))
    stored = StoredFile(name=name, size=size, sha256=digest.hexdigest())
    try:
        verify(target, stored)
    except BaseException:
        try:
            disk_backup.delete_pool_volume(host, pool, pool_path, name)
        except HypervisorError:
            pass
        raise
    return stored


def verify(target: BackupTarget, stored: StoredFile) -> None:
    """Check on the target that the file `stored.name` has the sha256 recorded; HypervisorError if not
    (nothing is checked on a simulated target host)."""
    _check_name(stored.name)
    if target.kind == BackupTarget.Kind.SSH:
        _verify_ssh_path(target, _remote_path(target, stored.name), stored)
        return
    if _simulated(target):
        return
    host, pool, pool_path = _pool_args(target)
    digest, size = hashlib.sha256(), 0
    for chunk in disk_backup.download(host, pool, pool_path, stored.name):
        digest.update(chunk)
        size += len(chunk)
    if digest.hexdigest() != stored.sha256 or size != stored.size:
        raise HypervisorError(
            f"{stored.name} on the backup target does not match what was sent "
            f"({size} bytes, sha256 {digest.hexdigest()})"
        )


def fetch(target: BackupTarget, name: str) -> Iterator[bytes]:
    """The file's bytes, in chunks (nothing from a simulated target host)."""
    _check_name(name)
    if target.kind == BackupTarget.Kind.SSH:
        return _ssh_fetch(target, name)
    host, pool, pool_path = _pool_args(target)
    return disk_backup.download(host, pool, pool_path, name, CHUNK)


def delete(target: BackupTarget, name: str) -> None:
    """Remove the file (and a NAME.partial a killed copy left); idempotent."""
    _check_name(name)
    if target.kind == BackupTarget.Kind.SSH:
        path = _remote_path(target, name)
        _ssh_ok(target, f"rm -f -- {shlex.quote(path)} {shlex.quote(path + PARTIAL)}", "rm")
        return
    host, pool, pool_path = _pool_args(target)
    disk_backup.delete_pool_volume(host, pool, pool_path, name)


def exists(target: BackupTarget, name: str) -> bool:
    """Whether the target holds the file `name`."""
    _check_name(name)
    if target.kind == BackupTarget.Kind.SSH:
        result = _ssh(target, f"test -f {shlex.quote(_remote_path(target, name))}")
        if result.returncode not in (0, 1):
            raise HypervisorError(f"test failed on the backup server: {_readable(result.stderr, target)}")
        return result.returncode == 0
    host, pool, pool_path = _pool_args(target)
    return disk_backup.pool_volume_exists(host, pool, pool_path, name)


def require_writable(target: BackupTarget) -> None:
    """HypervisorError with a readable reason unless the panel can write to the target now: the host's
    pool exists or can be made; the SSH server answers with a recorded key, accepts the panel's key, and
    a file can be written to the directory (created when missing)."""
    if target.kind == BackupTarget.Kind.SSH:
        directory = shlex.quote(_directory(target))
        probe = shlex.quote(f"{_directory(target).rstrip('/')}/.vpspanel-write-check")
        _ssh_ok(
            target,
            f"mkdir -p -- {directory} && : > {probe} && rm -f -- {probe}",
            "writing to the backup directory",
        )
        return
    if target.kind != BackupTarget.Kind.HOST_POOL:
        raise HypervisorError(f"unknown kind of backup target: {target.kind}")
    host, pool, pool_path = _pool_args(target)
    disk_backup.upload(host, pool, pool_path, WRITE_CHECK, [b"vpspanel"])  # makes the pool when missing
    disk_backup.delete_pool_volume(host, pool, pool_path, WRITE_CHECK)


def check(target: BackupTarget) -> CheckResult:
    """Whether the panel can write to the target now (for the admin's check): ok, or the reason."""
    try:
        require_writable(target)
    except HypervisorError as exc:
        return CheckResult(ok=False, reason=exc.message)
    return CheckResult(ok=True)


def record_check(target_id: int) -> CheckResult | None:
    """Check the target (a worker does: it talks to libvirt or SSH) and record when and the outcome on it;
    None when there is no such target."""
    target = BackupTarget.objects.select_related("host").filter(pk=target_id).first()
    if target is None:
        return None
    result = check(target)
    BackupTarget.objects.filter(pk=target_id).update(checked_at=timezone.now(), check_error=result.reason)
    return result


def scan_host_keys(address: str, port: int = 22, timeout: int = 5) -> str:
    """The SSH server's host keys in known_hosts format, read now (recorded when a target is added);
    `address` is a host name or address, or "user@host". Empty when none answer."""
    host = address.rpartition("@")[2]
    if not host or host.startswith("-"):
        raise HypervisorError(f"not a host name: {host!r}")
    return credentials.scan_ssh_host_keys(host, port, timeout)
