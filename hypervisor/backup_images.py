"""Backup images on the worker: gzip streams, and a chain of backup images (a full one and the incremental
ones after it) assembled into one standalone qcow2 with qemu-img. No libvirt here."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .connection import HypervisorError

COMPRESS_LEVEL = 1  # gzip's fastest: disk images are large, the worker's CPU is the bottleneck
QEMU_IMG_TIMEOUT = 6 * 3600.0  # seconds for one qemu-img convert of a large disk
QEMU_IMG_QUICK = 120.0  # seconds for qemu-img info and rebase -u (metadata only)


def tap(
    chunks: Iterable[bytes], digest=None, on_bytes: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The chunks as they are, each also fed to `digest` (a hashlib object) and counted: `on_bytes` is told
    the bytes passed so far."""
    done = 0
    for chunk in chunks:
        if digest is not None:
            digest.update(chunk)
        done += len(chunk)
        if on_bytes is not None:
            on_bytes(done)
        yield chunk


def compress(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks as one gzip stream (what `gunzip` reads), in chunks."""
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def decompress(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of a gzip stream, in chunks; HypervisorError when it is damaged or cut short."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            out = decompressor.decompress(chunk)
            if out:
                yield out
        tail = decompressor.flush()
    except zlib.error as exc:
        raise HypervisorError(f"the backup file is damaged: {exc}") from exc
    if tail:
        yield tail
    if not decompressor.eof:
        raise HypervisorError("the backup file ends early")


def decompress_to(chunks: Iterable[bytes], path: Path) -> None:
    """Write the bytes of a gzip stream to `path` (replaced; removed again when it fails)."""
    path = Path(path)
    try:
        with open(path, "wb") as handle:
            for data in decompress(chunks):
                handle.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _qemu_img(*args: str, timeout: float) -> str:
    try:
        result = subprocess.run(
            ["qemu-img", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise HypervisorError(f"qemu-img {args[0]} did not finish within {timeout:g} seconds") from exc
    except OSError as exc:
        raise HypervisorError(f"cannot run qemu-img: {exc}") from exc
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise HypervisorError(f"qemu-img {args[0]} failed: {reason[-1] if reason else result.returncode}")
    return result.stdout


def info(path: Path) -> dict:
    """qemu-img's facts about the image (format, virtual-size, backing-filename, ...)."""
    return json.loads(_qemu_img("info", "-U", "--output=json", "--", str(path), timeout=QEMU_IMG_QUICK))


def virtual_size(path: Path) -> int:
    """The disk size the image holds (bytes), not its file size."""
    return int(info(path)["virtual-size"])


def assemble(files: list[Path], out: Path) -> None:
    """One standalone qcow2 at `out` from a chain: files[0] a full backup image, the rest incremental images
    in order, each holding only the clusters changed since the one before. Each incremental image is
    rebased (metadata only, in place) onto the one before; the top is converted into `out` (qcow2 version
    3), reading through the chain. `out` is replaced; removed again when it fails."""
    if not files:
        raise HypervisorError("no backup images to restore from")
    files = [Path(file).resolve() for file in files]
    for file in files:
        if not file.is_file():
            raise HypervisorError(f"backup image {file.name} is missing")
        kind = info(file).get("format")
        if kind != "qcow2":
            raise HypervisorError(f"backup image {file.name} is {kind}, not qcow2")
    # The full image stands alone (an offline copy or libvirt's full backup); never trust a backing name.
    _qemu_img("rebase", "-u", "-b", "", "--", str(files[0]), timeout=QEMU_IMG_QUICK)
    for previous, file in zip(files, files[1:], strict=False):
        _qemu_img("rebase", "-u", "-F", "qcow2", "-b", str(previous), "--", str(file), timeout=QEMU_IMG_QUICK)
    out = Path(out)
    temporary = out.with_name(out.name + ".partial")
    temporary.unlink(missing_ok=True)
    try:
        _qemu_img(
            "convert", "-O", "qcow2", "-o", "compat=1.1", "--", str(files[-1]), str(temporary),
            timeout=QEMU_IMG_TIMEOUT,
        )  # fmt: skip
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
