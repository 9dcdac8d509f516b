from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hypervisor import services
from hypervisor.models import Region


class Command(BaseCommand):
    help = "Register a hypervisor host by its libvirt URI and probe it, printing the outcome."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "uri", help="qemu:///system, qemu+ssh://user@host/system, qemu+tls://host/system, test:///…"
        )
        parser.add_argument("--region", help="Region slug (default: the first region).")

    def handle(self, *args, name, uri, region, **options):
        regions = Region.objects.all()
        found = regions.filter(slug=region).first() if region else regions.first()
        if found is None:
            raise CommandError(
                f"No region {region!r}." if region else "No region exists yet: run seed_demo or create one."
            )
        try:
            host = services.register_host(name, uri, found)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        host = services.probe_host(host.pk)
        self.stdout.write(f"Host {host.name} ({host.uri}) in {found.slug}: {host.state}")
        if host.status_reason:
            self.stdout.write(f"Reason: {host.status_reason}")
        if host.state == host.State.READY:
            self.stdout.write(
                f"{host.vcpus_total} CPUs, {host.memory_mib_total} MiB memory, "
                f"{host.disk_gib_total} GiB in pool "
                f"{host.storage_pool}; domain type {host.domain_type}; libvirt {host.libvirt_version}"
            )
        else:
            raise CommandError(f"Probing {host.name} failed: {host.status_reason}")
