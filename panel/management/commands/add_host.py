from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hypervisor import credentials, hosts
from hypervisor.models import Region


class Command(BaseCommand):
    help = "Register a hypervisor host by its libvirt URI and probe it, printing the outcome."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "uri", help="qemu:///system, qemu+ssh://user@host/system, qemu+tls://host/system, test:///…"
        )
        parser.add_argument("--region", help="Region slug (default: the first region).")
        parser.add_argument("--storage-pool", default="default", help="Storage pool for VPS disks.")
        parser.add_argument(
            "--pool-path", default="", help="Create the pool as a dir pool here when missing."
        )
        parser.add_argument("--network", default="default", help="libvirt network for VPS interfaces.")
        parser.add_argument(
            "--bridge", default="", help="A host bridge (e.g. br0) instead of a libvirt network."
        )
        parser.add_argument("--tls-ca", type=Path, help="qemu+tls: the CA certificate (PEM file).")
        parser.add_argument(
            "--tls-cert", type=Path, help="qemu+tls: the panel's client certificate (PEM file)."
        )
        parser.add_argument("--tls-key", type=Path, help="qemu+tls: the client certificate's key (PEM file).")

    def handle(self, *args, name, uri, region, **options):
        regions = Region.objects.all()
        found = regions.filter(slug=region).first() if region else regions.first()
        if found is None:
            raise CommandError(
                f"No region {region!r}." if region else "No region exists yet: run seed_demo or create one."
            )
        tls = None
        tls_files = [options["tls_ca"], options["tls_cert"], options["tls_key"]]
        if any(tls_files):
            if not all(tls_files):
                raise CommandError("Give all of --tls-ca, --tls-cert and --tls-key.")
            try:
                tls = hosts.TLSMaterial(*(path.read_text() for path in tls_files))
            except OSError as exc:
                raise CommandError(f"Cannot read {exc.filename}: {exc.strerror}") from exc
        try:
            host = hosts.register_host(
                name,
                uri,
                found,
                storage_pool=options["storage_pool"],
                storage_pool_path=options["pool_path"],
                network=options["network"],
                bridge=options["bridge"],
                tls=tls,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if host.transport == "qemu+ssh":
            self.stdout.write("The panel connects with its own SSH key. On the host, run:")
            user = credentials.ssh_target(uri)[2]
            self.stdout.write(
                f"  echo '{credentials.authorized_keys_line()}' >> ~{user}/.ssh/authorized_keys"
            )
        host = hosts.probe_host(host.pk)
        self.stdout.write(f"Host {host.name} ({host.uri}) in {found.slug}: {host.state}")
        if host.status_reason:
            self.stdout.write(f"Reason: {host.status_reason}")
        for fingerprint in credentials.host_key_fingerprints(host.ssh_host_keys):
            self.stdout.write(f"Recorded SSH host key: {fingerprint}")
        if host.state == host.State.READY:
            self.stdout.write(
                f"{host.vcpus_total} CPUs, {host.memory_mib_total} MiB memory, "
                f"{host.disk_gib_total} GiB in pool {host.storage_pool}; domain type {host.domain_type}; "
                f"libvirt {host.libvirt_version}"
            )
        else:
            raise CommandError(f"Probing {host.name} failed: {host.status_reason}")
