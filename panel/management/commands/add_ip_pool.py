import ipaddress

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hypervisor import ipam
from hypervisor.models import IPPool, Region
from panel.infrastructure import pools


class Command(BaseCommand):
    help = (
        "Add an IP pool to a region: an IPv4 network (at most a /16, gateway inside it) or an IPv6 prefix "
        "(a /44 to /63 is cut into routed /64s, one per server, gateway usually fe80::1; a /64 or longer is "
        "handed out address by address). Running it again for a pool that exists says so and changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("region", help="Region slug.")
        parser.add_argument("cidr", help="192.0.2.0/24, 2001:db8:100::/48, 2001:db8:200::/64 …")
        parser.add_argument("gateway", help="IPv4: inside the network; IPv6: fe80::1 or inside the prefix.")
        parser.add_argument("--name", default="", help="The pool's name (default: the network).")
        parser.add_argument(
            "--nameserver",
            action="append",
            default=[],
            dest="nameservers",
            help="A DNS resolver; repeatable.",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            dest="excluded",
            help="An address, a first-last range or a network never handed out; repeatable.",
        )
        parser.add_argument(
            "--assignment",
            choices=IPPool.Assignment.values,
            help="IPv6: prefix64 (a routed /64 per server; default for prefixes shorter than /64) or "
            "address (one address per server).",
        )

    def handle(self, *args, region, cidr, gateway, name, nameservers, excluded, assignment, **options):
        found = Region.objects.filter(slug=region).first()
        if found is None:
            known = ", ".join(Region.objects.order_by("slug").values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"No region {region!r} (regions: {known}).")
        existing = self._existing(found, cidr)
        if existing is not None:
            self.stdout.write(
                f"Pool {existing.name} ({existing.cidr}) exists in {found.slug}; nothing changed."
            )
            self._differences(existing, gateway, assignment)
            self._describe(existing)
            return
        try:
            pool = pools.create_pool(
                None,
                region=found,
                name=name,
                cidr=cidr,
                gateway=gateway,
                nameservers=nameservers,
                excluded=excluded,
                assignment=assignment,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"Pool {pool.name} ({pool.cidr}) created in {found.slug}.")
        self._describe(pool)

    @staticmethod
    def _existing(region: Region, cidr: str) -> IPPool | None:
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=True)
        except ValueError:
            return None  # create_pool says what is wrong with it
        return IPPool.objects.filter(region=region, cidr=str(network)).first()

    def _differences(self, pool: IPPool, gateway: str, assignment: str | None) -> None:
        try:
            same_gateway = ipaddress.ip_address(gateway.strip()) == ipaddress.ip_address(pool.gateway)
        except ValueError:
            same_gateway = False
        if not same_gateway:
            self.stderr.write(f"Note: its gateway is {pool.gateway}, not {gateway}.")
        if assignment and assignment != pool.assignment:
            self.stderr.write(f"Note: its assignment is {pool.assignment}, not {assignment}.")

    def _describe(self, pool: IPPool) -> None:
        usage = ipam.pool_usage(pool)
        free = usage["total"] - usage["used"] - usage["cooling"] - usage["reserved"]
        unit = "routed /64s" if pool.assignment == IPPool.Assignment.PREFIX64 else "addresses"
        self.stdout.write(f"IPv{pool.family}, gateway {pool.gateway}, {pool.assignment} assignment")
        self.stdout.write(f"Size: {usage['total']} {unit} ({usage['used']} in use, {free} free)")
        if pool.nameservers:
            self.stdout.write(f"Nameservers: {', '.join(pool.nameservers)}")
        if pool.excluded:
            self.stdout.write(f"Excluded: {', '.join(pool.excluded)}")
