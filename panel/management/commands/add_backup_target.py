from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hypervisor.models import BackupTarget, Host, Region
from panel.infrastructure import backup_targets


def _ssh_parts(value: str) -> tuple[str, int]:
    """`user@host[:port]` (an IPv6 host in brackets when a port follows: user@[2001:db8::5]:2222)."""
    user, at, rest = value.strip().rpartition("@")
    port = 22
    if rest.startswith("["):
        host, _bracket, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = _port(tail[1:])
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
        port = _port(port_text)
    else:
        host = rest
    return f"{user}{at}{host}", port


def _port(text: str) -> int:
    if not text.isdigit():
        raise CommandError(f"Not a port: {text!r}.")
    return int(text)


class Command(BaseCommand):
    help = (
        "Add a backup target: a storage pool on a registered host (--host, optional --pool and --pool-path) "
        "or a directory on a backup server over SSH (--ssh user@host[:port] --directory DIR; its host keys "
        "are recorded now). --region SLUG (repeatable) makes it those regions' backup target. Running it "
        "again for a target that exists says so, changes nothing of the target and still sets the regions."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The target's name.")
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--host", help="A registered host's name (a storage pool on it).")
        where.add_argument("--ssh", help="user@host[:port] of the backup server.")
        parser.add_argument("--pool", default="", help="The storage pool (default vpspanel-backups).")
        parser.add_argument("--pool-path", default="", help="Where a missing directory pool is made.")
        parser.add_argument("--directory", default="", help="SSH: the absolute directory for backups.")
        parser.add_argument(
            "--region", action="append", default=[], dest="regions", help="A region's slug; repeatable."
        )

    def handle(self, *args, name, host, ssh, pool, pool_path, directory, regions, **options):
        found = [self._region(slug) for slug in regions]
        existing = BackupTarget.objects.filter(name=name.strip()).select_related("host").first()
        if existing is not None:
            where = backup_targets.where(existing)
            self.stdout.write(f"Backup target {existing.name} exists ({where}); nothing of it changed.")
            target = existing
        else:
            if host is not None:
                registered = Host.objects.filter(name=host).first()
                if registered is None:
                    known = ", ".join(Host.objects.order_by("name").values_list("name", flat=True)) or "none"
                    raise CommandError(f"No host {host!r} (hosts: {known}).")
                arguments = {"kind": BackupTarget.Kind.HOST_POOL, "host": registered, "pool": pool,
                             "pool_path": pool_path}  # fmt: skip
            else:
                if pool or pool_path:
                    raise CommandError("--pool and --pool-path are for --host targets.")
                address, port = _ssh_parts(ssh)
                arguments = {"kind": BackupTarget.Kind.SSH, "ssh_address": address, "ssh_port": port,
                             "directory": directory}  # fmt: skip
            try:
                target = backup_targets.create_target(None, name=name, **arguments)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
            self.stdout.write(f"Backup target {target.name} added ({backup_targets.where(target)}).")
        for region in found:
            try:
                backup_targets.set_region_target(None, region, target)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
            self.stdout.write(f"Region {region.slug} backs up to {target.name}.")

    @staticmethod
    def _region(slug: str) -> Region:
        region = Region.objects.filter(slug=slug).first()
        if region is None:
            known = ", ".join(Region.objects.order_by("slug").values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"No region {slug!r} (regions: {known}).")
        return region
