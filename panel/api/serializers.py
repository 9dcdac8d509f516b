import functools
from collections.abc import Callable
from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model
from django.utils.encoding import smart_str
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from billing import document, seller
from billing.invoices import amount_due
from billing.models import Invoice, InvoiceLine, Payment, Plan, SellerProfile
from billing.money import currency, quantize
from hypervisor import credentials, hosts, placement
from hypervisor.models import Host, Image, Region
from panel.accounts import quotas
from panel.accounts.openssh import parse_public_key
from panel.infrastructure import host_moves
from panel.models import Backup, Operation, Server, Snapshot, SSHKey, User
from panel.servers import catalog, migration, order_catalogue, passwords
from panel.servers.actions import CUSTOMER_ACTIONS
from panel.servers.validators import validate_hostname


def money(amount) -> str:
    return str(quantize(amount))


class RegionSerializer(serializers.ModelSerializer):
    available = serializers.SerializerMethodField()

    class Meta:
        model = Region
        fields = ["slug", "name", "available"]

    def get_available(self, region: Region) -> bool:
        return region.is_active and region.pk in self.context["regions_with_hosts"]


class PlanSerializer(serializers.ModelSerializer):
    price_monthly = serializers.SerializerMethodField()
    price_hourly = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    available = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = [
            "slug",
            "name",
            "vcpus",
            "memory_mib",
            "disk_gib",
            "transfer_gib",
            "port_speed_mbps",
            "price_monthly",
            "price_hourly",
            "currency",
            "available",
        ]

    def get_price_monthly(self, plan: Plan) -> str:
        return money(plan.price_monthly)

    def get_price_hourly(self, plan: Plan) -> str:
        return str(plan.price_hourly.normalize())

    def get_currency(self, plan: Plan) -> str:
        return currency()

    def get_available(self, plan: Plan) -> bool:
        return plan.is_active and plan.pk in self.context["available_plans"]


class ImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Image
        fields = ["slug", "name", "os_family"]


class IsoSerializer(serializers.ModelSerializer):
    """An installer ISO a customer can attach to a server (action attach_iso)."""

    class Meta:
        model = Image
        fields = ["slug", "name", "size_bytes"]


class SSHKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = SSHKey
        fields = ["id", "name", "fingerprint", "public_key"]
        read_only_fields = ["id", "fingerprint"]

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError(_("Give the key a name."))
        return value

    def validate_public_key(self, value: str) -> str:
        try:
            key = parse_public_key(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        owner = self.context["request"].user
        if SSHKey.objects.filter(owner=owner, fingerprint=key.fingerprint).exists():
            raise serializers.ValidationError(_("You have added this key already."))
        self._fingerprint = key.fingerprint
        return key.line

    def create(self, validated_data):
        return SSHKey.objects.create(
            owner=self.context["request"].user, fingerprint=self._fingerprint, **validated_data
        )


class ServerSerializer(serializers.ModelSerializer):
    plan = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    image = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    region = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    ipv4 = serializers.SerializerMethodField()
    ipv6 = serializers.SerializerMethodField()
    ipv6_networks = serializers.SerializerMethodField()
    status_reason = serializers.SerializerMethodField()

    class Meta:
        model = Server
        fields = [
            "id",
            "name",
            "status",
            "task",
            "plan",
            "image",
            "region",
            "vcpus",
            "memory_mib",
            "disk_gib",
            "ipv4",
            "ipv6",
            "ipv6_networks",
            "mac",
            "created_at",
            "status_reason",
        ]

    def get_ipv4(self, server: Server) -> list[str]:
        return server.ipv4

    def get_ipv6(self, server: Server) -> list[str]:
        return server.ipv6

    def get_ipv6_networks(self, server: Server) -> list[str]:
        """The IPv6 networks the server may use: its routed /64, or its one address as a /128."""
        return [row.assigned_network for row in server.ipv6_addresses]

    def get_status_reason(self, server: Server) -> str | None:
        """Stored in the source language, answered in the request's."""
        return gettext(server.status_reason) if server.status_reason else None


@functools.cache
def _server_representation() -> ServerSerializer:
    return ServerSerializer()


def server_representation(server: Server) -> dict:
    """`ServerSerializer(server).data` for the answer to an order and to a client polling its server, from
    one serializer per process whose fields are made once (building a model serializer's fields costs more
    than representing a server; representing reads the fields only, so threads may share them)."""
    return _server_representation().to_representation(server)


class AdminServerSerializer(ServerSerializer):
    customer = serializers.EmailField(source="owner.email", read_only=True)
    host = serializers.CharField(source="host.name", read_only=True, default=None)

    class Meta(ServerSerializer.Meta):
        fields = [*ServerSerializer.Meta.fields, "customer", "host", "power_state", "status_detail"]


class CatalogueSlugField(serializers.SlugRelatedField):
    """A plan, image or region of an order by its slug, found in the process's copy of what is on offer
    (panel.servers.order_catalogue) instead of asking Postgres; the order checks it again in its
    transaction. The queryset is what the schema describes."""

    def __init__(self, find: Callable[[str], Model | None], **kwargs):
        self.find = find
        super().__init__(slug_field="slug", **kwargs)

    def __deepcopy__(self, memo):
        # Each serializer copies its declared fields; the queryset is only what the schema describes (DRF
        # clones it before any use), so the copy shares it instead of copying it.
        return self.__class__(*self._args, **self._kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("invalid")
        try:
            found = self.find(str(data))
        except (TypeError, ValueError):  # what Postgres cannot hold (a NUL), as SlugRelatedField does
            self.fail("invalid")
        if found is None:
            self.fail("does_not_exist", slug_name=self.slug_field, value=smart_str(data))
        return found


class ServerCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=253)
    plan = CatalogueSlugField(order_catalogue.plan, queryset=Plan.objects.filter(is_active=True))
    image = CatalogueSlugField(
        order_catalogue.image, queryset=catalog.active_images(), required=False, allow_null=True
    )
    backup = serializers.IntegerField(
        required=False, allow_null=True, help_text="instead of `image`: make the server from this backup"
    )
    region = CatalogueSlugField(
        order_catalogue.region, queryset=catalog.open_regions(), required=False, allow_null=True
    )
    ssh_keys = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    user_data = serializers.CharField(required=False, allow_blank=True, default="", max_length=65536)
    password = serializers.CharField(
        required=False, allow_blank=True, default="", write_only=True, min_length=8, max_length=128,
        help_text="optional root password (only its salted hash is kept)",
    )  # fmt: skip

    def validate_name(self, value: str) -> str:
        try:
            return validate_hostname(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def validate_ssh_keys(self, value: list[int]) -> list[SSHKey]:
        if not value:
            return []
        owner = self.context["request"].user
        keys = list(SSHKey.objects.filter(owner=owner, pk__in=value))
        missing = sorted(set(value) - {key.pk for key in keys})
        if missing:
            raise serializers.ValidationError(
                _("Unknown SSH key id(s): %(ids)s.") % {"ids": ", ".join(map(str, missing))}
            )
        return keys

    def validate_backup(self, value: int | None) -> Backup | None:
        if value is None:
            return None
        owner = self.context["request"].user
        backup = (
            Backup.objects.usable()
            .select_related("server", "server__image", "server__region")
            .filter(pk=value, server__owner=owner)
            .first()
        )
        if backup is None:
            raise serializers.ValidationError(_("Unknown backup %(id)s.") % {"id": value})
        return backup

    def validate(self, attrs):
        if bool(attrs.get("image")) == bool(attrs.get("backup")):
            raise serializers.ValidationError(
                {"image": [_("Give either an image or a backup to make the server from.")]}
            )
        if not attrs.get("region") and attrs.get("backup"):
            attrs["region"] = attrs["backup"].server.region  # where the backed-up server was
        if not attrs.get("region"):
            plan = attrs["plan"]
            fitting = placement.regions_that_fit(
                placement.Resources(plan.vcpus, plan.memory_mib, plan.disk_gib)
            )
            region = (
                Region.objects.filter(is_active=True, pk__in=fitting).first()
                or Region.objects.filter(is_active=True).first()
            )
            if region is None:
                raise serializers.ValidationError({"region": [_("No region is open for orders.")]})
            attrs["region"] = region
        return attrs


def _is_staff(context) -> bool:
    request = context.get("request")
    return bool(request is not None and getattr(request.user, "is_panel_staff", False))


# The parameters a customer gave an action, and all a customer sees of them: staff's suspension reasons,
# billing's undo data and facts a worker kept are the panel's own.
CUSTOMER_PARAMS = ("plan", "image", "name", "snapshot", "iso", "backup")


class MigrationLimitsSerializer(serializers.Serializer):
    """A live migration's bandwidth cap and time limit (a migrate's, or each of a drain's), as the admin
    sets them; left out: the panel's defaults."""

    max_bandwidth_mib = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=migration.MAX_BANDWIDTH_MIB,
        help_text="a live migration's bandwidth cap in MiB/s (0: none; a drain's: each migration's); the "
        "panel's default (MIGRATION_MAX_BANDWIDTH_MIB) when left out",
    )
    timeout_seconds = serializers.IntegerField(
        required=False,
        min_value=migration.MIN_TIMEOUT_SECONDS,
        max_value=migration.MAX_TIMEOUT_SECONDS,
        help_text="how long a live migration may take before it is aborted (the server stays where it was); "
        "the panel's default (MIGRATION_TIMEOUT_SECONDS) when left out",
    )


class ActionSerializer(serializers.ModelSerializer):
    params = serializers.SerializerMethodField()
    detail = serializers.SerializerMethodField(help_text="staff only: the error as the hypervisor gave it")
    error = serializers.SerializerMethodField(help_text="what failed, in plain words")

    class Meta:
        model = Operation
        fields = [
            "id", "type", "status", "error", "created_at", "finished_at", "params", "detail", "progress",
        ]  # fmt: skip

    def get_params(self, operation: Operation) -> dict:
        params = operation.params or {}
        if _is_staff(self.context):  # all but a one-time password (encrypted) not yet used by the worker
            stripped = passwords.without_secret(params)
            return params if stripped is None else stripped
        return {key: params[key] for key in CUSTOMER_PARAMS if key in params}

    def get_error(self, operation: Operation) -> str:
        return gettext(operation.error) if operation.error else ""

    def get_detail(self, operation: Operation) -> str | None:
        return operation.detail if _is_staff(self.context) else None


class ActionCreateSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=[(a.value, a.label) for a in CUSTOMER_ACTIONS])
    plan = serializers.CharField(required=False, help_text="resize: the new plan's slug")
    image = serializers.CharField(required=False, help_text="rebuild: the image's slug")
    name = serializers.CharField(required=False, max_length=64, help_text="snapshot: its name")
    snapshot = serializers.IntegerField(required=False, help_text="restore, delete_snapshot: the snapshot id")
    iso = serializers.CharField(required=False, help_text="attach_iso: the ISO image's slug (GET isos/)")
    backup = serializers.IntegerField(required=False, help_text="restore_backup: the backup id")
    password = serializers.CharField(
        required=False, allow_blank=True, write_only=True, trim_whitespace=False,
        min_length=passwords.MIN_LENGTH, max_length=passwords.MAX_LENGTH,
        help_text="reset_password: the new root password (generated when left out). The 202 answer of "
        "reset_password and rescue (the rescue system's one-time root password) carries it in `password`: "
        "it is shown only there and kept only encrypted until the worker has used it.",
    )  # fmt: skip

    REQUIRED = {"resize": "plan", "rebuild": "image", "snapshot": "name", "restore": "snapshot",
                "delete_snapshot": "snapshot", "attach_iso": "iso", "restore_backup": "backup"}  # fmt: skip

    def validate(self, attrs):
        needed = self.REQUIRED.get(attrs["type"])
        if needed and attrs.get(needed) in (None, ""):
            raise serializers.ValidationError({needed: [_("This field is required for %(type)s.") % attrs]})
        return attrs


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = Snapshot
        fields = ["id", "name", "created_at", "size_bytes"]


HOST_SETTINGS = list(hosts.SETTINGS)
HOST_MOVES = "host_moves"  # the context key of a page's moves (by host id)


class HostListSerializer(serializers.ListSerializer):
    """A page of hosts: their moves are read for the whole page at once (host_moves.latest_moves)."""

    def to_representation(self, data):
        rows = list(data.all() if hasattr(data, "all") else data)
        self.context[HOST_MOVES] = host_moves.latest_moves(host.pk for host in rows)
        return super().to_representation(rows)


MOVE_SCHEMA = inline_serializer(
    "HostMove",
    {
        "id": serializers.IntegerField(),
        "kind": serializers.ChoiceField(choices=["drain", "evacuate"]),
        "status": serializers.ChoiceField(choices=["running", "finished"]),
        "total": serializers.IntegerField(),
        "moved": serializers.IntegerField(),
        "moving": serializers.IntegerField(),
        "waiting": serializers.IntegerField(),
        "failed": inline_serializer(
            "HostMoveFailure",
            {
                "server": serializers.UUIDField(),
                "name": serializers.CharField(),
                "reason": serializers.CharField(),
            },
            many=True,
        ),
        "created_at": serializers.DateTimeField(),
        "finished_at": serializers.DateTimeField(allow_null=True),
    },
    allow_null=True,
)


def move_representation(progress: host_moves.MoveProgress | None) -> dict | None:
    """A host's running or latest move (drain or evacuation) with its progress; reasons in the reader's
    language."""
    if progress is None:
        return None
    move = progress.move
    timestamp = serializers.DateTimeField()
    return {
        "id": move.pk,
        "kind": move.kind,
        "status": move.status,
        "total": progress.total,
        "moved": progress.moved,
        "moving": progress.moving,
        "waiting": progress.waiting,
        "failed": [
            {
                "server": item.server_id,
                "name": item.name,
                "reason": gettext(item.reason) if item.reason else "",
            }
            for item in progress.failed
        ],
        "created_at": timestamp.to_representation(move.created_at),
        "finished_at": timestamp.to_representation(move.finished_at) if move.finished_at else None,
    }


class HostSerializer(serializers.ModelSerializer):
    region = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    capacity = serializers.SerializerMethodField()
    allocated = serializers.SerializerMethodField()
    physical = serializers.SerializerMethodField()
    ssh_host_key_fingerprints = serializers.SerializerMethodField()
    authorized_keys_line = serializers.SerializerMethodField()
    move = serializers.SerializerMethodField(help_text="the host's running or latest drain or evacuation")

    class Meta:
        model = Host
        list_serializer_class = HostListSerializer
        fields = [
            "id",
            "name",
            "uri",
            "region",
            "state",
            "enabled",
            *HOST_SETTINGS,
            "capacity",
            "allocated",
            "physical",
            "status_reason",
            "disabled_by",
            "disabled_reason",
            "domain_type",
            "arch",
            "cpu_model",
            "libvirt_version",
            "hypervisor_version",
            "inventory",
            "ssh_host_key_fingerprints",
            "authorized_keys_line",
            "last_probed_at",
            "last_seen_at",
            "move",
        ]
        read_only_fields = fields

    def get_capacity(self, host: Host) -> dict[str, int]:
        return host.capacity

    def get_allocated(self, host: Host) -> dict[str, int]:
        return placement.allocated(host)

    def get_physical(self, host: Host) -> dict[str, int]:
        return {
            "vcpus": host.vcpus_total,
            "memory_mib": host.memory_mib_total,
            "memory_mib_free": host.memory_mib_free,
            "disk_gib": host.disk_gib_total,
        }

    def get_ssh_host_key_fingerprints(self, host: Host) -> list[str]:
        return credentials.host_key_fingerprints(host.ssh_host_keys)

    def get_authorized_keys_line(self, host: Host) -> str | None:
        """For qemu+ssh hosts: the line to add to the host user's ~/.ssh/authorized_keys."""
        return credentials.authorized_keys_line() if host.transport == "qemu+ssh" else None

    @extend_schema_field(MOVE_SCHEMA)
    def get_move(self, host: Host) -> dict | None:
        moves = self.context.get(HOST_MOVES)
        return move_representation(moves.get(host.pk) if moves is not None else host_moves.latest_move(host))


class HostCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    uri = serializers.CharField(max_length=500)
    region = serializers.SlugRelatedField(slug_field="slug", queryset=Region.objects.all())
    storage_pool = serializers.CharField(max_length=100, required=False, default="default")
    storage_pool_path = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    network = serializers.CharField(max_length=100, required=False, default="default")
    bridge = serializers.CharField(max_length=30, required=False, allow_blank=True, default="")
    tls_ca_cert = serializers.CharField(required=False, allow_blank=True, default="")
    tls_client_cert = serializers.CharField(required=False, allow_blank=True, default="")
    tls_client_key = serializers.CharField(required=False, allow_blank=True, default="")

    def validate_uri(self, value: str) -> str:
        try:
            return hosts.validate_uri(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def validate_name(self, value: str) -> str:
        if Host.objects.filter(name=value.strip()).exists():
            raise serializers.ValidationError(_("A host with this name exists already."))
        return value.strip()

    def service_arguments(self) -> dict:
        data = dict(self.validated_data)
        tls = [data.pop("tls_ca_cert"), data.pop("tls_client_cert"), data.pop("tls_client_key")]
        data["tls"] = hosts.TLSMaterial(*tls) if any(tls) else None
        return data


class HostUpdateSerializer(serializers.ModelSerializer):
    enabled = serializers.BooleanField(required=False)
    disabled_reason = serializers.CharField(required=False, allow_blank=True, max_length=255)

    class Meta:
        model = Host
        fields = ["enabled", "disabled_reason", *HOST_SETTINGS]


class CustomerSerializer(serializers.ModelSerializer):
    balance = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(source="date_joined")

    class Meta:
        model = User
        fields = ["id", "email", "role", "balance", "created_at"]

    def get_balance(self, user: User) -> str:
        return money(getattr(user, "balance_total", None) or 0)


def _limit_field(**extra) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=quotas.MAX_LIMIT, allow_null=True, **extra)


class QuotaSerializer(serializers.Serializer):
    """Limits; null means no limit. `snapshots`, `extra_ipv4` and `backups` may be left out (they keep their
    value). `new_account_limits`: false lifts the new-account limits, true puts them in force again."""

    servers = _limit_field()
    vcpus = _limit_field()
    memory_mib = _limit_field()
    disk_gib = _limit_field()
    snapshots = _limit_field(required=False)
    extra_ipv4 = _limit_field(required=False)
    backups = _limit_field(
        required=False, help_text="backups kept: the retentions of enabled policies added up"
    )
    new_account_limits = serializers.BooleanField(required=False)


class InvoiceLineSerializer(serializers.ModelSerializer):
    # In the token owner's language (the API answers in it), its dates formatted for it.
    description = serializers.CharField(source="description_text", read_only=True)
    amount = serializers.SerializerMethodField()
    unit_price = serializers.SerializerMethodField()

    class Meta:
        model = InvoiceLine
        fields = ["kind", "description", "period_start", "period_end", "quantity", "unit_price", "amount"]

    def get_amount(self, line: InvoiceLine) -> str:
        return money(line.amount)

    def get_unit_price(self, line: InvoiceLine) -> str:
        return str(line.unit_price.normalize())


class InvoiceSerializer(serializers.ModelSerializer):
    """An invoice with its tax breakdown (amounts are strings in the currency's precision), who sold and
    who bought as the invoice recorded them, the tax withheld, what is still due and how much to transfer
    by bank (with the invoice's unique code), and its credit notes."""

    subtotal = serializers.SerializerMethodField()
    tax_base = serializers.SerializerMethodField()
    tax = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField()
    tax_rate = serializers.SerializerMethodField()
    seller = serializers.SerializerMethodField()
    buyer = serializers.SerializerMethodField()
    # The parties' tax ids also flat, as the contract names them ("the seller's and buyer's tax ids").
    seller_tax_id = serializers.SerializerMethodField()
    buyer_tax_id = serializers.SerializerMethodField()
    withheld = serializers.SerializerMethodField()
    amount_due = serializers.SerializerMethodField()
    transfer_amount = serializers.SerializerMethodField()
    credit_notes = serializers.SerializerMethodField()
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id", "number", "status", "issued_at", "due_at", "paid_at", "total", "currency", "lines",
            "subtotal", "tax_base", "tax", "tax_rate", "tax_base_fraction", "seller", "buyer",
            "seller_tax_id", "buyer_tax_id", "withheld",
            "amount_due", "unique_code", "transfer_amount", "credit_notes",
        ]  # fmt: skip

    def _seller_profile(self):
        """Today's seller profile (for invoices issued before invoices recorded the seller): one query for
        a whole list."""
        if "seller_profile" not in self.context:
            self.context["seller_profile"] = seller.profile()
        return self.context["seller_profile"]

    def get_subtotal(self, invoice: Invoice) -> str:
        return money(invoice.subtotal)

    def get_tax_base(self, invoice: Invoice) -> str:
        return money(invoice.tax_base)

    def get_tax(self, invoice: Invoice) -> str:
        return money(invoice.tax)

    def get_total(self, invoice: Invoice) -> str:
        return money(invoice.total)

    def get_tax_rate(self, invoice: Invoice) -> str:
        """The VAT (PPN) rate in percent, e.g. "12.00"; "0.00" for an invoice without tax."""
        return f"{invoice.tax_rate:.2f}"

    @extend_schema_field(
        inline_serializer(
            "InvoiceSeller", {name: serializers.CharField() for name in ("name", "address", "tax_id")}
        )
    )
    def get_seller(self, invoice: Invoice) -> dict:
        # An invoice that recorded its seller needs nothing of today's profile.
        profile = SellerProfile() if invoice.seller_name else self._seller_profile()
        party = document.seller_of(invoice, profile)
        return {"name": party.name, "address": party.address, "tax_id": party.tax_id}

    @extend_schema_field(
        inline_serializer(
            "InvoiceBuyer",
            {name: serializers.CharField() for name in ("name", "address", "tax_id_kind", "tax_id")},
        )
    )
    def get_seller_tax_id(self, invoice: Invoice) -> str:
        """The seller's NPWP ("" when none is set)."""
        return self.get_seller(invoice)["tax_id"]

    def get_buyer_tax_id(self, invoice: Invoice) -> str:
        """The buyer's NPWP or NIK (`buyer.tax_id_kind` says which; "" when the customer gave none)."""
        return document.buyer_of(invoice).tax_id

    def get_buyer(self, invoice: Invoice) -> dict:
        party = document.buyer_of(invoice)
        return {
            "name": party.name,
            "address": party.address,
            "tax_id_kind": party.tax_id_kind,
            "tax_id": party.tax_id,
        }

    def get_withheld(self, invoice: Invoice) -> str:
        return money(invoice.withheld)

    def get_amount_due(self, invoice: Invoice) -> str:
        return money(amount_due(invoice))

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_transfer_amount(self, invoice: Invoice) -> str | None:
        """What to transfer by bank for an open invoice (what it still needs plus its unique code); null
        once it is paid or void."""
        if invoice.status != Invoice.Status.OPEN:
            return None
        return money(document.to_transfer(invoice, invoice.withheld))

    @extend_schema_field(
        inline_serializer(
            "InvoiceCreditNote",
            {
                "number": serializers.CharField(),
                "total": serializers.CharField(),
                "issued_at": serializers.DateTimeField(),
            },
            many=True,
        )
    )
    def get_credit_notes(self, invoice: Invoice) -> list[dict]:
        field = serializers.DateTimeField()
        return [
            {
                "number": note.number,
                "total": money(note.total),
                "issued_at": field.to_representation(note.issued_at),
            }
            for note in invoice.credit_notes.all()
        ]


class PaymentCreateSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=16, decimal_places=2, min_value=Decimal("0.01"))
    reference = serializers.CharField(max_length=100)
    method = serializers.CharField(max_length=30, required=False, default="bank_transfer")

    def validate_amount(self, value):
        if value != quantize(value):
            raise serializers.ValidationError(_("The amount is more precise than the currency allows."))
        return value


class PaymentSerializer(serializers.ModelSerializer):
    amount = serializers.SerializerMethodField()

    class Meta:
        model = Payment
        fields = ["id", "amount", "currency", "reference", "method", "received_at"]

    def get_amount(self, payment: Payment) -> str:
        return money(payment.amount)
