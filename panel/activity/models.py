from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billing.money import format_money


class ActivityEvent(models.Model):
    """One line of the append-only activity log: what happened to an account (logins, password and 2FA
    changes, tokens, SSH keys, orders, actions, payments) and what staff and admins did (`staff_action`).

    Rows are written by `panel.activity.log.record` and never changed or deleted by the panel."""

    class Type(models.TextChoices):
        LOGIN = "login", _("Logged in")
        LOGIN_FAILED = "login_failed", _("Failed login")
        LOGOUT = "logout", _("Logged out")
        SIGNUP = "signup", _("Signed up")
        EMAIL_VERIFIED = "email_verified", _("Email address verified")
        PASSWORD_CHANGED = "password_changed", _("Password changed")
        PASSWORD_RESET = "password_reset", _("Password reset")
        TOTP_ENABLED = "totp_enabled", _("Two-factor authentication enabled")
        TOTP_DISABLED = "totp_disabled", _("Two-factor authentication removed")
        RECOVERY_CODES = "recovery_codes", _("Recovery codes made")
        RECOVERY_CODE_USED = "recovery_code_used", _("Recovery code used")
        TOKEN_CREATED = "token_created", _("API token created")
        TOKEN_REVOKED = "token_revoked", _("API token revoked")
        SSH_KEY_ADDED = "ssh_key_added", _("SSH key added")
        SSH_KEY_DELETED = "ssh_key_deleted", _("SSH key deleted")
        SERVER_ORDERED = "server_ordered", _("Server ordered")
        SERVER_ACTION = "server_action", _("Server action")
        CONSOLE_OPENED = "console_opened", _("Console opened")
        PAYMENT = "payment", _("Payment")
        PAYMENT_REFUSED = "payment_refused", _("Online payment not credited")
        QUOTA_CHANGED = "quota_changed", _("Quota changed")
        LIMITS_LIFTED = "limits_lifted", _("New-account limits lifted")
        CREDIT = "credit", _("Credit or charge")
        BILLING_TERMS = "billing_terms", _("Billing terms changed")
        INVOICE_VOIDED = "invoice_voided", _("Invoice voided")
        WITHHOLDING = "withholding", _("Tax withheld recorded")
        CREDIT_NOTE = "credit_note", _("Credit note issued")
        SELLER_PROFILE = "seller_profile", _("Seller and payment details changed")
        SUSPENSION = "suspension", _("Suspension")
        TRAFFIC_BLOCK = "traffic_block", _("Traffic block added")
        HOST_CHANGED = "host_changed", _("Host changed")
        IP_POOL_CHANGED = "ip_pool_changed", _("IP pool changed")
        BACKUP_TARGET_CHANGED = "backup_target_changed", _("Backup target changed")
        IMAGE_CHANGED = "image_changed", _("Image changed")
        FIREWALL_CHANGED = "firewall_changed", _("Firewall changed")
        REVERSE_DNS = "reverse_dns", _("Reverse DNS changed")
        ADDRESS_CHANGED = "address_changed", _("IP address added, moved or removed")

    at = models.DateTimeField(default=timezone.now)
    # Whose log the event belongs to (the customer it concerns); null for events about no account (hosts).
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="activity"
    )
    # Who did it (the customer, a staff member, or null for the panel itself).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    type = models.CharField(max_length=30, choices=Type.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    target = models.CharField(max_length=200, blank=True)
    # The summary is kept as its English message (marked with gettext_noop where it is recorded) and its
    # values, so that each reader sees it in their own language: see `text`.
    summary = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    staff_action = models.BooleanField(default=False)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["account", "-at"]),
            models.Index(
                fields=["-at", "-id"], name="activity_staff_idx", condition=models.Q(staff_action=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.type}: {self.text}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("activity events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("activity events are append-only")

    def get_type_display(self) -> str:
        """The type's label in the active language. Replaces Django's generated method, which hashes (and
        so translates) every one of the type's lazy labels on each call: one lookup of the enum member."""
        try:
            return str(self.Type(self.type).label)
        except ValueError:
            return self.type

    @property
    def text(self) -> str:
        """The summary in the active language, with its values filled in."""
        message = gettext(self.summary)
        values = dict(self.data or {})
        if "amount" in values and "currency" in values:  # money as the reader's language writes it
            values.setdefault("money", format_money(values["amount"], values["currency"]))
        try:
            return message % values if values else message
        except (KeyError, TypeError, ValueError):
            return self.summary
