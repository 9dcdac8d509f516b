from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from . import checkout_states, invoice_states, subscription_states, texts


class TransferDirection(models.TextChoices):
    IN = "in", _("Inbound only")
    OUT = "out", _("Outbound only")
    BOTH = "both", _("Inbound and outbound")


class OverLimitPolicy(models.TextChoices):
    NOTIFY = "notify", _("Notify only")
    THROTTLE = "throttle", _("Throttle")
    SUSPEND = "suspend", _("Suspend")


class Plan(models.Model):
    """A VPS size with its prices. Resources are copied onto a server when it is ordered.

    Port speed (Mbps) and transfer (GiB a month) are different things: the first caps the rate, the
    second the amount, counted in `transfer_direction`; `over_limit_policy` says what happens past it."""

    slug = models.SlugField(_("slug"), unique=True)
    name = models.CharField(_("name"), max_length=100)
    vcpus = models.PositiveIntegerField(_("vCPUs"), validators=[MinValueValidator(1)])
    memory_mib = models.PositiveIntegerField(_("memory (MiB)"), validators=[MinValueValidator(64)])
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"), validators=[MinValueValidator(1)])
    transfer_gib = models.PositiveIntegerField(
        _("monthly transfer (GiB)"), null=True, blank=True, help_text=_("Empty means unlimited.")
    )
    port_speed_mbps = models.PositiveIntegerField(_("port speed (Mbps)"), default=100)
    transfer_direction = models.CharField(
        _("counted traffic"), max_length=4, choices=TransferDirection.choices, default=TransferDirection.BOTH
    )
    over_limit_policy = models.CharField(
        _("when the allowance is used up"), max_length=10, choices=OverLimitPolicy.choices,
        default=OverLimitPolicy.THROTTLE,
    )  # fmt: skip
    throttle_mbps = models.PositiveIntegerField(_("throttled speed (Mbps)"), default=10)
    price_monthly = models.DecimalField(_("monthly price"), max_digits=14, decimal_places=2)
    price_hourly = models.DecimalField(_("hourly price"), max_digits=14, decimal_places=4)
    is_active = models.BooleanField(_("on sale"), default=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "price_monthly", "slug"]
        verbose_name = _("plan")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(price_hourly__lte=models.F("price_monthly")),
                name="plan_hourly_price_capped_by_monthly",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class LedgerEntry(models.Model):
    """One line of a customer's append-only account ledger; the balance is their sum."""

    class Kind(models.TextChoices):
        CHARGE = "charge", _("Charge")
        PAYMENT = "payment", _("Payment")
        CREDIT = "credit", _("Credit")
        REFUND = "refund", _("Refund")
        ADJUSTMENT = "adjustment", _("Adjustment")
        # Income tax (PPh 23) a company customer withheld from an invoice and paid to the tax office for us:
        # it settles that part of the invoice without money arriving (billing.withholding).
        WITHHOLDING = "withholding", _("Tax withheld (PPh 23)")

    account = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    invoice = models.ForeignKey(
        "Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    payment = models.ForeignKey(
        "Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    amount = models.DecimalField(
        max_digits=16, decimal_places=2, help_text=_("Positive adds to the balance.")
    )
    currency = models.CharField(max_length=3)
    # The reason in English. What the system writes also keeps its message and values (billing.texts), so
    # that each reader sees it in their own language: see `reason_text`. Staff's free text has no data.
    reason = models.CharField(max_length=255, blank=True)
    reason_data = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["account", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Ledger entries are append-only.")
        super().save(*args, **kwargs)

    @property
    def reason_text(self) -> str:
        """The reason in the active language (the English `reason` for free text and old rows)."""
        return texts.render(self.reason_data, self.reason)


class BillingProfile(models.Model):
    """Per-customer billing terms staff may set: a discount, or custom prices per plan."""

    account = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="billing_profile"
    )
    discount_percent = models.DecimalField(
        _("discount (%)"), max_digits=5, decimal_places=2, default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
    )  # fmt: skip
    custom_prices = models.JSONField(_("custom monthly prices by plan slug"), default=dict, blank=True)
    # Who the invoices are made out to, as the customer gives it (billing.buyer): a company's name and NPWP,
    # or an individual's NIK, and the address for the tax invoice. Blank: the account's name and email.
    company_name = models.CharField(_("company name"), max_length=200, blank=True)
    tax_id_kind = models.CharField(
        _("tax ID type"), max_length=4, choices=[("npwp", _("NPWP")), ("nik", _("NIK"))], blank=True
    )
    tax_id = models.CharField(_("tax ID"), max_length=32, blank=True)
    billing_address = models.TextField(_("billing address"), max_length=500, blank=True)

    def __str__(self) -> str:
        return f"billing profile of {self.account_id}"


class Subscription(models.Model):
    """What a customer pays for one server (billing knows the server only by `reference`)."""

    class Cycle(models.TextChoices):
        MONTHLY = "monthly", _("Monthly")
        HOURLY = "hourly", _("Hourly")

    Status = subscription_states.Status

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="subscriptions"
    )
    reference = models.CharField(max_length=64, db_index=True, help_text="the server's id")
    label = models.CharField(max_length=253, help_text="the server's hostname, for invoices")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    cycle = models.CharField(max_length=10, choices=Cycle.choices, default=Cycle.MONTHLY)
    price = models.DecimalField(max_digits=14, decimal_places=4, help_text="per month, or per hour (hourly)")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField()
    period_start = models.DateTimeField(help_text="start of the period billed last (monthly)")
    paid_through = models.DateTimeField(
        help_text="monthly: end of the period invoiced; hourly: invoiced up to"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status", "paid_through"])]

    def __str__(self) -> str:
        return f"{self.label} ({self.plan_id}, {self.cycle})"


class AddonKind(models.TextChoices):
    """What a subscription add-on is (billing.addons). Each kind has its admin-set monthly price
    (`AddonPrice`) and a name invoices show (`ADDON_NAMES`)."""

    IPV4 = "ipv4", _("Additional IPv4 address")
    BACKUP = "backup", _("Backups")


# The name of one add-on on invoice lines and the billing page, shown in the reader's language: the kind's
# message filled in with the add-on's key. Kinds without one are named by the label the caller gave.
ADDON_NAMES: dict[str, str] = {
    # Translators: %(key)s is the IPv4 address, e.g. 192.0.2.10.
    AddonKind.IPV4: gettext_noop("Additional IPv4 address %(key)s"),
    AddonKind.BACKUP: gettext_noop("Backups"),
}


class AddonQuerySet(models.QuerySet):
    def active(self) -> AddonQuerySet:
        return self.filter(ended_at__isnull=True)

    def end(self, at) -> int:
        """End the active add-ons among these at `at` (never before one started); the number ended."""
        return self.active().update(ended_at=Greatest(F("started_at"), Value(at)))


class SubscriptionAddon(models.Model):
    """Something billed with a server's subscription besides its plan, e.g. an additional IPv4 address:
    priced per month at `price` (the kind's price when it started, kept while it runs, as a subscription
    keeps its plan's), from `started_at` to `ended_at` (null while it runs). `key` says which one it is
    (the address); it is unique among the subscription's active add-ons. Billing: billing.addons."""

    Kind = AddonKind

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="addons")
    kind = models.CharField(max_length=20, choices=AddonKind.choices)
    key = models.CharField(max_length=100)
    label = models.CharField(
        max_length=255, help_text="for invoices, e.g. Additional IPv4 address 192.0.2.10"
    )
    price = models.DecimalField(max_digits=14, decimal_places=4, help_text="per month")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = AddonQuerySet.as_manager()

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "key"],
                condition=models.Q(ended_at__isnull=True),
                name="subscription_addon_active_key",
            ),
            models.CheckConstraint(
                condition=models.Q(ended_at__isnull=True) | models.Q(ended_at__gte=F("started_at")),
                name="subscription_addon_ends_after_it_starts",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def name(self) -> str | texts.Message:
        """The add-on's name as invoices store it: the kind's message with the key, else the label."""
        message = ADDON_NAMES.get(self.kind)
        return texts.Message(message, {"key": self.key}) if message else self.label

    @property
    def name_text(self) -> str:
        """The add-on's name in the active language."""
        name = self.name
        return name.render() if isinstance(name, texts.Message) else name


class AddonPrice(models.Model):
    """The monthly price of an add-on kind, which admins set on the billing settings page
    (billing.addons.set_addon_price). A kind without a row is free."""

    kind = models.CharField(max_length=20, choices=AddonKind.choices, unique=True)
    price = models.DecimalField(max_digits=14, decimal_places=4, help_text="per month")
    # A kind priced as a share of the server's plan's monthly price (backups): the percent, and `price` 0.
    share_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gte=0), name="addon_price_not_negative")
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.price}"


class InvoiceSequence(models.Model):
    """The last invoice number used in a year; locked while the next one is taken."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class Invoice(models.Model):
    Status = invoice_states.Status

    account = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    currency = models.CharField(max_length=3)
    # The tax breakdown (billing.tax), computed once per invoice when it is issued: `subtotal` is the price
    # before tax, `tax_base` the base the rate applies to (DPP: 11/12 of the price under PMK 131/2024),
    # `tax` the tax (PPN), `total` what is owed. `tax_rate` (percent) and `tax_base_fraction` ("11/12") are
    # the rule it was issued under. An invoice without tax has tax 0 and rate 0.
    subtotal = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    tax_base = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    tax = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    tax_rate = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("0"))
    tax_base_fraction = models.CharField(max_length=11, blank=True)
    total = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    # Who sold and who bought, as they were when the invoice was issued (a tax invoice never changes).
    seller_name = models.CharField(max_length=200, blank=True)
    seller_address = models.TextField(max_length=500, blank=True)
    seller_tax_id = models.CharField(max_length=32, blank=True)
    buyer_name = models.CharField(max_length=200, blank=True)
    buyer_address = models.TextField(max_length=500, blank=True)
    buyer_tax_id_kind = models.CharField(max_length=4, blank=True)
    buyer_tax_id = models.CharField(max_length=32, blank=True)
    # Bank transfer without a gateway: the last digits added to the amount to transfer, unique among open
    # invoices, so that staff matching a bank statement find the invoice by its amount (billing.transfer).
    unique_code = models.PositiveSmallIntegerField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    overdue_notified_at = models.DateTimeField(null=True, blank=True)
    termination_warned_at = models.DateTimeField(null=True, blank=True)
    # The invoice's mail (billing.invoice_mail): `mail_after`, when beat's sweep is to hand it to a worker
    # (again, a day on, in case its task was lost), NULL once it is out or not to be sent; `mailed_at`, when
    # it went out (a task for an invoice mailed already sends nothing).
    mail_after = models.DateTimeField(null=True, blank=True)
    mailed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "status"]),
            models.Index(fields=["status", "due_at"]),
            # Only the invoices whose mail has not gone out yet: the sweep's index stays a few rows deep.
            models.Index(
                fields=["mail_after"],
                name="billing_invoice_mail_due",
                condition=models.Q(mail_after__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.pk}"

    @property
    def transfer_amount(self) -> Decimal:
        """What to transfer by bank for this invoice: its total plus its unique code (the code's digits
        become credit on the account)."""
        return self.total + (self.unique_code or 0)


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        PLAN = "plan", _("Plan")
        PRORATION = "proration", _("Proration")
        HOURLY = "hourly", _("Hourly usage")
        TRAFFIC = "traffic", _("Traffic block")
        MANUAL = "manual", _("Manual item")
        # A subscription add-on's period, or the part of one (billing.addons); its hours on an hourly
        # subscription are HOURLY lines.
        ADDON = "addon", _("Add-on")

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # The description in English, and its message and values (billing.texts) when billing wrote it, so that
    # each reader sees it in their own language, its dates formatted for it: see `description_text`.
    description = models.CharField(max_length=255)
    description_data = models.JSONField(default=dict, blank=True)
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    quantity = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal("1"))
    unit_price = models.DecimalField(max_digits=14, decimal_places=4)
    amount = models.DecimalField(max_digits=16, decimal_places=2)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.description

    @property
    def description_text(self) -> str:
        """The description in the active language (the English `description` for rows without data)."""
        return texts.render(self.description_data, self.description)


class Payment(models.Model):
    """Money received: a bank transfer staff recorded, or a provider's confirmed payment."""

    account = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(
        max_digits=16, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    currency = models.CharField(max_length=3)
    reference = models.CharField(max_length=100, unique=True)
    method = models.CharField(max_length=30, default="bank_transfer")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    received_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.reference}: {self.amount} {self.currency}"


class SellerProfile(models.Model):
    """Who sells (printed on invoices) and how customers pay by bank transfer: one row, pk 1, that admins
    edit on the billing settings page (`billing.seller`). Every field is optional; a blank one is not
    shown."""

    SINGLETON_PK = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_PK, editable=False)
    legal_name = models.CharField(_("legal name"), max_length=200, blank=True)
    address = models.TextField(_("address"), max_length=500, blank=True)
    tax_id = models.CharField(_("tax ID (NPWP)"), max_length=32, blank=True)
    email = models.EmailField(_("billing email"), max_length=254, blank=True)
    phone = models.CharField(_("billing phone"), max_length=32, blank=True)
    bank_name = models.CharField(_("bank"), max_length=100, blank=True)
    account_number = models.CharField(_("account number"), max_length=40, blank=True)
    account_holder = models.CharField(_("account holder"), max_length=200, blank=True)
    payment_note = models.TextField(_("extra payment instructions"), max_length=1000, blank=True)
    unique_amount_codes = models.BooleanField(
        _("unique amount codes"),
        default=False,
        help_text=_(
            "Add a code of up to three digits to each invoice's amount, so that each bank transfer's amount "
            "points to one invoice."
        ),
    )
    updated_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("seller profile")
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="seller_profile_single_row")]

    def __str__(self) -> str:
        return self.legal_name or "seller profile"

    @property
    def has_seller_details(self) -> bool:
        return bool(self.legal_name or self.address or self.tax_id)


class CreditNoteSequence(models.Model):
    """The last credit note number used in a year; locked while the next one is taken."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class CreditNote(models.Model):
    """A numbered document that cancels (part of) an issued invoice: issued when an invoice is voided or an
    amount of it refunded, with the same tax breakdown in proportion (billing.credit_notes)."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="credit_notes"
    )
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=20, unique=True)
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(max_digits=16, decimal_places=2)
    tax_base = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    tax = models.DecimalField(max_digits=16, decimal_places=2)
    total = models.DecimalField(max_digits=16, decimal_places=2)
    reason = models.CharField(max_length=255, blank=True)
    reason_data = models.JSONField(default=dict, blank=True)
    issued_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-issued_at", "-id"]

    def __str__(self) -> str:
        return self.number

    @property
    def reason_text(self) -> str:
        return texts.render(self.reason_data, self.reason)


class WithholdingSlip(models.Model):
    """A withholding slip (bukti potong PPh 23) a company customer gave for an invoice: staff record its
    number, amount and a scan, and the amount settles that part of the invoice (billing.withholding)."""

    account = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="withholding_slips")
    number = models.CharField(_("slip number"), max_length=64)
    amount = models.DecimalField(
        _("amount withheld"), max_digits=16, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    file = models.FileField(_("scan of the slip"), upload_to="withholding/%Y/", blank=True)
    entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="withholding_slip")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "number"], name="withholding_slip_number_per_account")
        ]

    def __str__(self) -> str:
        return self.number


class Checkout(models.Model):
    """One attempt to pay through a provider (billing.checkouts): a top-up of the balance, or the amount an
    open invoice still needs. `reference` is our order id, which the provider echoes in its notification;
    `provider_id` is the provider's id of the checkout (Xendit's invoice id, Midtrans's Snap token) and
    `transaction_id` the id of the payment that paid it, which is the Payment's reference."""

    Status = checkout_states.Status

    class Purpose(models.TextChoices):
        TOP_UP = "top_up", _("Top-up")
        INVOICE = "invoice", _("Invoice")

    account = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="checkouts")
    provider = models.CharField(max_length=30)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.TOP_UP)
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="checkouts"
    )
    amount = models.DecimalField(
        max_digits=16, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=64, unique=True)
    provider_id = models.CharField(max_length=100, blank=True)
    transaction_id = models.CharField(max_length=100, blank=True)
    checkout_url = models.URLField(max_length=1000, blank=True)
    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="checkouts"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "checked_at"]),
            models.Index(fields=["account", "created_at"]),
        ]

    def __str__(self) -> str:
        return self.reference
