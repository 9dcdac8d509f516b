from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import invoice_states, subscription_states, texts


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
    total = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    issued_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    overdue_notified_at = models.DateTimeField(null=True, blank=True)
    termination_warned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "status"]), models.Index(fields=["status", "due_at"])]

    def __str__(self) -> str:
        return self.number or f"draft {self.pk}"


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        PLAN = "plan", _("Plan")
        PRORATION = "proration", _("Proration")
        HOURLY = "hourly", _("Hourly usage")
        TRAFFIC = "traffic", _("Traffic block")
        MANUAL = "manual", _("Manual item")

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
