from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


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
    amount = models.DecimalField(
        max_digits=16, decimal_places=2, help_text=_("Positive adds to the balance.")
    )
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["account", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Ledger entries are append-only.")
        super().save(*args, **kwargs)


ZERO = Decimal("0")
