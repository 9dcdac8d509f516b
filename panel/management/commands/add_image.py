from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hypervisor import images
from hypervisor.models import Image


class Command(BaseCommand):
    help = (
        "Register (or update) an OS image from a qcow2 file in the image directory (the IMAGE_DIR setting) "
        "on the panel server."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("path", help="The qcow2 file, inside IMAGE_DIR (a relative path is taken there).")
        parser.add_argument("--name", required=True, help="The name customers see.")
        parser.add_argument("--os-family", required=True, help="debian, ubuntu, rhel, …")
        parser.add_argument("--kernel", default="", help="For direct kernel boot: the kernel file.")
        parser.add_argument("--initrd", default="", help="For direct kernel boot: the initrd file.")
        parser.add_argument("--cmdline", default="", help="For direct kernel boot: the kernel command line.")
        parser.add_argument(
            "--purpose", default=Image.Purpose.OS, choices=Image.Purpose.values,
            help="os (ordered and rebuilt with; the default), rescue (the rescue system rescue mode boots, "
            "with direct kernel boot or from its disk) or iso (an installer .iso customers attach).",
        )  # fmt: skip

    def handle(self, *args, slug, path, name, os_family, kernel, initrd, cmdline, purpose, **options):
        try:
            image = images.register_image(
                slug, path, name=name, os_family=os_family, kernel=kernel, initrd=initrd, cmdline=cmdline,
                purpose=purpose,
            )  # fmt: skip
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        gib = image.virtual_size_bytes / 1024**3
        self.stdout.write(f"Image {image.slug}: {image.name}, {gib:.1f} GiB virtual, sha256 {image.checksum}")
        if image.kernel_path:
            boot = f"{image.kernel_path}, {image.initrd_path}, {image.cmdline!r}"
            self.stdout.write(f"Direct kernel boot: {boot}")
