import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from panel.activity.models import ActivityEvent
from panel.request_context import current, current_user


class PanelUserManager(UserManager):
    """Users sign in with their email address; the username is the email."""

    def create_user(self, email, password=None, **extra_fields):
        email = self.normalize_email(email).lower()
        extra_fields.setdefault("username", email)
        return super().create_user(email=email, password=password, **extra_fields)

    def create_superuser(self, email=None, password=None, **extra_fields):
        extra_fields.setdefault("role", User.Role.ADMIN)
        return self.create_user(email, password, **extra_fields)


class User(AbstractUser):
    class Role(models.TextChoices):
        CUSTOMER = "customer", _("Customer")
        STAFF = "staff", _("Staff")
        ADMIN = "admin", _("Admin")

    email = models.EmailField(_("email address"), unique=True)
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.CUSTOMER)
    # Only a sign-up in the browser makes an unverified account; operators and staff create verified ones.
    email_verified = models.BooleanField(_("email verified"), default=True)
    # A sign-up is held to the smaller NEW_ACCOUNT_QUOTA until its settled payments reach
    # NEW_ACCOUNT_LIFT_AMOUNT (or until staff lift it).
    new_account_limits = models.BooleanField(_("new-account limits"), default=False)
    # Whether the user has a confirmed TOTP device: kept by panel.activity.receivers whenever a device is
    # saved or deleted (in the same transaction), so that every request can ask without a query.
    totp_enabled = models.BooleanField(_("two-factor authentication"), default=False, editable=False)
    # The language the account reads the panel, its mails and its stored texts in: chosen at sign-up,
    # changed on the account page or with the language switch; `panel.accounts.languages` activates it.
    # Blank (accounts from before there was a choice): the browser's, adopted on the next visit.
    language = models.CharField(
        _("language"), max_length=10, choices=settings.LANGUAGES, blank=True, default=""
    )

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []
    objects = PanelUserManager()

    class Meta:
        ordering = ["email"]
        verbose_name = _("user")

    # The password pages set this before saving a password that an emailed reset link changed, so that the
    # activity log says so (see `save`).
    password_reset_by_link = False

    def save(self, *args, **kwargs):
        self.email = (self.email or "").lower()
        self.username = self.email
        # Only admins reach the Django admin; the flags follow the role.
        self.is_staff = self.role == self.Role.ADMIN
        self.is_superuser = self.role == self.Role.ADMIN
        # Django sets `_password` in set_password (and not when it only rehashes a password on login).
        password_changed = self._password is not None and not self._state.adding
        if not password_changed:
            super().save(*args, **kwargs)
            return
        with transaction.atomic():
            super().save(*args, **kwargs)
            self._password_changed()

    def _password_changed(self) -> None:
        """Whichever way the password changed (the account page, a reset link, the Django admin, an admin's
        form, `manage.py changepassword`, code): revoke every API token and record it, in the saving
        transaction. Other sessions end by themselves (Django's session hash follows the password)."""
        actor = current_user()
        if self.password_reset_by_link:
            actor, summary = self, gettext_noop("Reset the password with an emailed link.")
            kind = ActivityEvent.Type.PASSWORD_RESET
        elif actor is not None and actor.pk == self.pk:
            summary, kind = gettext_noop("Changed the password."), ActivityEvent.Type.PASSWORD_CHANGED
        elif actor is not None:
            summary = gettext_noop("An administrator changed the password.")
            kind = ActivityEvent.Type.PASSWORD_CHANGED
        else:
            summary = gettext_noop("The password was changed by an operator.")
            kind = ActivityEvent.Type.PASSWORD_CHANGED
        self.password_reset_by_link = False
        staff_action = actor is None or actor.pk != self.pk or self.is_panel_staff
        revoked, _deleted = ApiToken.objects.filter(user=self).delete()
        if revoked:
            self._record(
                ActivityEvent.Type.TOKEN_REVOKED,
                gettext_noop("Revoked all API tokens (%(count)s) because the password changed."),
                {"count": revoked},
                None,
                staff_action=False,
            )
        self._record(kind, summary, {}, actor, staff_action=staff_action)

    def _record(self, kind: str, summary: str, data: dict, actor, *, staff_action: bool) -> None:
        """An activity event of this account (as `panel.activity.log.record`, which models cannot import)."""
        info = current.get()
        ActivityEvent.objects.create(
            type=kind,
            summary=summary,
            data=data,
            account=self,
            actor=actor,
            target=f"user:{self.pk}",
            staff_action=staff_action,
            ip=info.ip if info else None,
            user_agent=info.user_agent if info else "",
        )

    @property
    def is_panel_staff(self) -> bool:
        """Staff pages are for staff and admins."""
        return self.role in (self.Role.STAFF, self.Role.ADMIN)

    @property
    def is_panel_admin(self) -> bool:
        return self.role == self.Role.ADMIN


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the REST API. Only its SHA-256 is stored; the token is shown once."""

    PREFIX = "vps_"

    class Scope(models.TextChoices):
        READ = "read", _("Read only")
        WRITE = "write", _("Read and write")

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100, blank=True)
    scope = models.CharField(_("scope"), max_length=5, choices=Scope.choices, default=Scope.WRITE)
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name or _('token')} ({self.hint}…)"

    @classmethod
    def issue(cls, user: User, name: str = "") -> tuple["ApiToken", str]:
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, key_hash=hash_token(raw), hint=raw[:8])
        return token, raw

    @classmethod
    def authenticate(cls, raw: str) -> User | None:
        token = cls.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
        if token is None or not token.user.is_active:
            return None
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user


class SSHKey(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(_("name"), max_length=100)
    public_key = models.TextField(_("public key"))
    fingerprint = models.CharField(_("fingerprint"), max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("SSH key")
        constraints = [
            models.UniqueConstraint(fields=["owner", "fingerprint"], name="sshkey_unique_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name


class Quota(models.Model):
    """What a customer may hold at most; an empty limit means no limit."""

    RESOURCES = ("servers", "vcpus", "memory_mib", "disk_gib", "snapshots", "extra_ipv4", "backups")

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    servers = models.PositiveIntegerField(_("servers"), null=True, blank=True)
    vcpus = models.PositiveIntegerField(_("vCPUs"), null=True, blank=True)
    memory_mib = models.PositiveIntegerField(_("memory (MiB)"), null=True, blank=True)
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"), null=True, blank=True)
    snapshots = models.PositiveIntegerField(_("snapshots"), null=True, blank=True)
    extra_ipv4 = models.PositiveIntegerField(_("additional IPv4 addresses"), null=True, blank=True)
    # Backups kept: the retentions of the customer's enabled backup policies added up (panel.backups).
    backups = models.PositiveIntegerField(_("backups kept"), null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("quota")

    def __str__(self) -> str:
        return f"quota of {self.user_id}"

    def limits(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in self.RESOURCES}
