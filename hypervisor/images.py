"""OS images: registering them on the panel server, and copying them to hosts through libvirt's volume
upload stream (no shared filesystem), verified by reading them back, cached as base volumes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import timedelta
from pathlib import Path

import libvirt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from . import connection
from .connection import HypervisorError
from .models import BaseVolume, Host, Image
from .xml.storage import Volume

CHUNK = 1024 * 1024
STALE_UPLOAD = timedelta(minutes=30)


class UploadInProgress(HypervisorError):
    """Another worker is copying this image to the host; try again shortly."""

    def __init__(self, message: str):
        super().__init__(message, transient=True)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def qemu_img_info(path: str | Path) -> dict:
    try:
        result = subprocess.run(
            ["qemu-img", "info", "--output=json", str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    except FileNotFoundError:
        raise ValidationError(
            _("qemu-img is not installed on the panel server (Debian package qemu-utils).")
        ) from None
    except subprocess.CalledProcessError as exc:
        raise ValidationError(
            _("%(path)s is not a disk image: %(error)s"), params={"path": path, "error": exc.stderr.strip()}
        ) from None
    return json.loads(result.stdout)


def image_dir() -> Path:
    """The one directory image files are read from (IMAGE_DIR), with its symlinks resolved."""
    return Path(settings.IMAGE_DIR).resolve()


def confined_path(path: str | Path) -> Path:
    """The file `path` names (relative paths are taken inside IMAGE_DIR), with symlinks resolved, if it
    lies inside IMAGE_DIR and is a regular file; a ValidationError otherwise. The panel reads these files
    and copies them to hosts (a kernel or initrd reaches the guest), so nothing else may be named."""
    base = image_dir()
    candidate = Path(path)
    if not str(path).strip() or "\x00" in str(path):
        raise ValidationError(_("Give the path of the image file."), code="invalid_path")
    file = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if not file.is_relative_to(base) or file == base:
        raise ValidationError(
            _("Image files must be inside %(dir)s (the IMAGE_DIR setting); %(path)s is not."),
            params={"dir": base, "path": path},
            code="outside_image_dir",
        )
    if not file.is_file():
        raise ValidationError(_("No file at %(path)s."), params={"path": file}, code="no_file")
    return file


def register_image(
    slug: str,
    path: str,
    *,
    name: str,
    os_family: str,
    kernel: str = "",
    initrd: str = "",
    cmdline: str = "",
    purpose: str = Image.Purpose.OS,
) -> Image:
    """Add or update an image from a qcow2 file in IMAGE_DIR on the panel server (checksums computed now).
    Kernel and initrd files for direct kernel boot must be in IMAGE_DIR too. An installer ISO (purpose
    iso) is an .iso file there, which qemu-img reads as raw."""
    if purpose == Image.Purpose.ISO:
        return _register_iso(slug, path, name=name, os_family=os_family, kernel=kernel or initrd)
    if bool(kernel) != bool(initrd):
        raise ValidationError(_("Give both a kernel and an initrd for direct kernel boot, or neither."))
    file = confined_path(path)
    extras = {kind: confined_path(value) for kind, value in (("kernel", kernel), ("initrd", initrd)) if value}
    info = qemu_img_info(file)
    if info.get("format") != "qcow2":
        raise ValidationError(
            _("%(path)s is %(format)s; images must be qcow2."),
            params={"path": file, "format": info.get("format")},
        )
    if info.get("backing-filename"):
        raise ValidationError(
            _("%(path)s has a backing file; flatten it first (qemu-img convert)."), params={"path": file}
        )
    values = {
        "name": name,
        "os_family": os_family,
        "purpose": purpose,
        "path": str(file),
        "checksum": sha256_of(file),
        "size_bytes": file.stat().st_size,
        "virtual_size_bytes": int(info["virtual-size"]),
        "cmdline": cmdline,
        "kernel_path": "",
        "kernel_checksum": "",
        "initrd_path": "",
        "initrd_checksum": "",
        "is_active": True,
    }
    for kind, extra in extras.items():
        values[f"{kind}_path"] = str(extra)
        values[f"{kind}_checksum"] = sha256_of(extra)
    image, _created = Image.objects.update_or_create(slug=slug, defaults=values)
    return image


def _register_iso(slug: str, path: str, *, name: str, os_family: str, kernel: str) -> Image:
    """Add or update an installer ISO customers attach to their servers and boot from."""
    if kernel:
        raise ValidationError(_("An ISO image boots by itself: give no kernel or initrd."))
    file = confined_path(path)
    if file.suffix.lower() != ".iso":
        raise ValidationError(_("%(path)s is not an .iso file."), params={"path": file})
    info = qemu_img_info(file)
    if info.get("format") != "raw":
        raise ValidationError(
            _("%(path)s is %(format)s; an ISO image is read as raw."),
            params={"path": file, "format": info.get("format")},
        )
    values = {
        "name": name,
        "os_family": os_family,
        "purpose": Image.Purpose.ISO,
        "path": str(file),
        "checksum": sha256_of(file),
        "size_bytes": file.stat().st_size,
        "virtual_size_bytes": int(info["virtual-size"]),
        "cmdline": "",
        "kernel_path": "",
        "kernel_checksum": "",
        "initrd_path": "",
        "initrd_checksum": "",
        "is_active": True,
    }
    image, _created = Image.objects.update_or_create(slug=slug, defaults=values)
    return image


def files_of(image: Image) -> list[tuple[str, str, str]]:
    """(kind, path on the panel server, checksum) of what a host needs for this image: an installer ISO's
    one file is of kind iso."""
    if image.purpose == Image.Purpose.ISO:
        return [("iso", image.path, image.checksum)]
    files = [("disk", image.path, image.checksum)]
    if image.kernel_path:
        files += [
            ("kernel", image.kernel_path, image.kernel_checksum),
            ("initrd", image.initrd_path, image.initrd_checksum),
        ]
    return files


def volume_name(image: Image, kind: str, checksum: str) -> str:
    suffix = {"disk": "qcow2", "kernel": "vmlinuz", "initrd": "initrd", "iso": "iso"}[kind]
    return f"base-{image.slug}-{checksum[:12]}.{suffix}"


def simulated(host: Host) -> bool:
    """libvirt's test driver holds no data: volumes are made but nothing is copied into them."""
    return host.transport == "test"


def _claim_upload(
    host: Host, image: Image, kind: str, name: str, checksum: str, owner: str
) -> BaseVolume | None:
    """The ready base volume, or None after this worker took the upload. Raises UploadInProgress.

    An upload left unfinished by the same operation (its worker was killed; this is the redelivery) or
    a stale one is taken over."""
    existing = BaseVolume.objects.filter(host=host, volume_name=name).first()
    if existing and existing.state == BaseVolume.State.READY:
        return existing
    if existing is None:
        try:
            with transaction.atomic():
                BaseVolume.objects.create(
                    host=host, image=image, kind=kind, volume_name=name, checksum=checksum, owner=owner
                )
            return None
        except IntegrityError:
            raise UploadInProgress(_("the image is being copied to the host by another task")) from None
    stale = timezone.now() - STALE_UPLOAD
    mine = Q(owner=owner) if owner else Q(pk__in=[])
    if (
        BaseVolume.objects.filter(pk=existing.pk, state=BaseVolume.State.UPLOADING)
        .filter(mine | Q(updated_at__lt=stale))
        .update(updated_at=timezone.now(), owner=owner)
    ):
        return None  # took over an unfinished upload
    raise UploadInProgress(_("the image is being copied to the host by another task"))


def _upload(host: Host, pool_name: str, name: str, source: str, checksum: str) -> str:
    """Create the volume (replacing a partial one) and stream the file into it; verify by reading back."""
    size = Path(source).stat().st_size

    def work(conn: libvirt.virConnect) -> str:
        pool = conn.storagePoolLookupByName(pool_name)
        try:
            pool.storageVolLookupByName(name).delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
        volume = pool.createXML(Volume(name, size, format="raw").to_xml(), 0)
        if simulated(host):
            return volume.path()
        stream = conn.newStream(0)
        volume.upload(stream, 0, size, 0)
        with open(source, "rb") as handle:
            stream.sendAll(lambda _stream, nbytes, fh: fh.read(nbytes), handle)
        stream.finish()
        digest = hashlib.sha256()
        stream = conn.newStream(0)
        volume.download(stream, 0, size, 0)

        def sink(_stream, data: bytes, hasher) -> int:
            hasher.update(data)
            return len(data)

        stream.recvAll(sink, digest)
        stream.finish()
        if digest.hexdigest() != checksum:
            volume.delete(0)
            raise HypervisorError(f"the copy of {name} on the host does not match its checksum")
        return volume.path()

    return connection.run(host, work, timeout=settings.IMAGE_UPLOAD_TIMEOUT)


def ensure_base_volumes(host: Host, image: Image, owner: str = "") -> dict[str, str]:
    """Paths on the host of the image's disk (and kernel, initrd), copying what is missing first."""
    if not image.path or not image.checksum:
        raise HypervisorError(
            _("the image %(image)s has no file; an admin must add it with add_image") % {"image": image.slug}
        )
    paths = {}
    for kind, source, checksum in files_of(image):
        name = volume_name(image, kind, checksum)
        ready = _claim_upload(host, image, kind, name, checksum, owner)
        if ready is None:
            try:
                # Checked again at use: an image row made before IMAGE_DIR existed may name any file.
                try:
                    source = str(confined_path(source))
                except ValidationError as exc:
                    raise HypervisorError(" ".join(exc.messages)) from None
                path = _upload(host, host.storage_pool, name, source, checksum)
            except BaseException:
                BaseVolume.objects.filter(
                    host=host, volume_name=name, state=BaseVolume.State.UPLOADING
                ).delete()
                raise
            BaseVolume.objects.filter(host=host, volume_name=name).update(
                state=BaseVolume.State.READY, path=path
            )
            paths[kind] = path
        else:
            paths[kind] = ready.path
    return paths


def rescue_image() -> Image | None:
    """The rescue system rescue mode boots: the available image of purpose rescue registered last, or None
    when an admin has registered none."""
    return Image.objects.filter(purpose=Image.Purpose.RESCUE, is_active=True).order_by("-pk").first()
