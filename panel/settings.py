"""Settings, read from the environment (see README.md for every variable).

Production defaults are safe: DEBUG is off unless asked for, and SECRET_KEY must be given unless the panel
runs in debug or demo mode.
"""

import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Core ------------------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG")
DEMO = env_bool("DEMO")
DATA_DIR = Path(os.environ.get("PANEL_DATA_DIR", BASE_DIR / "var"))

# Commands that only read or write source files (migrations, message catalogues) never use the key.
SOURCE_COMMANDS = {"makemigrations", "makemessages", "compilemessages"}
SOURCE_COMMAND = (
    Path(sys.argv[0]).name == "manage.py" and len(sys.argv) > 1 and sys.argv[1] in SOURCE_COMMANDS
)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or DEMO or SOURCE_COMMAND):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (a long random string), "
            "or set DEBUG=1 or DEMO=1 for a development or demo panel."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")


# --- Django: apps, middleware, templates -----------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "panel.apps.PanelConfig",
    "hypervisor.apps.HypervisorConfig",
    "billing.apps.BillingConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # A logged-in user's own language (User.language) over what LocaleMiddleware chose.
    "panel.accounts.languages.AccountLanguageMiddleware",
    "panel.middleware.SecondFactorMiddleware",
    "panel.activity.log.RequestContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "panel.urls"
WSGI_APPLICATION = "panel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]


# --- Database --------------------------------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'panel.sqlite3'}"),
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # The embedded demo database is shared by the web server and the worker: wait for locks.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Accounts: sign-in, quotas, new-account limits, two-factor -------------------------------------------

AUTH_USER_MODEL = "panel.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "server-list"
LOGOUT_REDIRECT_URL = "login"


# Quotas for new customers: an empty value means no limit.
def _limit(name: str, default: str = "") -> int | None:
    value = os.environ.get(name, default).strip()
    return int(value) if value else None


DEFAULT_QUOTA = {
    "servers": _limit("DEFAULT_QUOTA_SERVERS", "10"),
    "vcpus": _limit("DEFAULT_QUOTA_VCPUS", "32"),
    "memory_mib": _limit("DEFAULT_QUOTA_MEMORY_MIB", "65536"),
    "disk_gib": _limit("DEFAULT_QUOTA_DISK_GIB", "1000"),
    "snapshots": _limit("DEFAULT_QUOTA_SNAPSHOTS", "20"),
    "extra_ipv4": _limit("DEFAULT_QUOTA_EXTRA_IPV4", "4"),
    "backups": _limit("DEFAULT_QUOTA_BACKUPS", "70"),
}
# Accounts made by browser sign-up are held to at most these limits (the smaller of this and their own
# quota) until their payments reach NEW_ACCOUNT_LIFT_AMOUNT, or until staff lift them; empty: no extra limit.
NEW_ACCOUNT_QUOTA = {
    "servers": _limit("NEW_ACCOUNT_QUOTA_SERVERS", "1"),
    "vcpus": _limit("NEW_ACCOUNT_QUOTA_VCPUS", "2"),
    "memory_mib": _limit("NEW_ACCOUNT_QUOTA_MEMORY_MIB", "2048"),
    "disk_gib": _limit("NEW_ACCOUNT_QUOTA_DISK_GIB", "50"),
    "snapshots": _limit("NEW_ACCOUNT_QUOTA_SNAPSHOTS", "1"),
    "extra_ipv4": _limit("NEW_ACCOUNT_QUOTA_EXTRA_IPV4", "0"),
    "backups": _limit("NEW_ACCOUNT_QUOTA_BACKUPS", "7"),
}


# The new-account limits are lifted once the account's settled payments add up to this amount (in the
# installation's currency); empty: the monthly price of the cheapest plan on sale.
def _amount(name: str) -> Decimal | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0:
        raise ImproperlyConfigured(f"{name} must be an amount of money (e.g. 50000), not {value!r}.")
    return amount


NEW_ACCOUNT_LIFT_AMOUNT = _amount("NEW_ACCOUNT_LIFT_AMOUNT")

# Account security: two-factor authentication (panel/accounts/totp.py). Staff and admins must enrol; customers
# may.
OTP_TOTP_ISSUER = os.environ.get("TOTP_ISSUER", "VPS Panel")  # the name authenticator apps show
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the Django admin never shows TOTP secrets or recovery code hashes
TOTP_LOGIN_MAX_WRONG_CODES = int(os.environ.get("TOTP_LOGIN_MAX_WRONG_CODES", "5"))  # then the password again
TOTP_LOGIN_PENDING_SECONDS = int(os.environ.get("TOTP_LOGIN_PENDING_SECONDS", "300"))  # to enter the code


# --- Languages, time and static files --------------------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("id", _("Bahasa Indonesia"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Jakarta")
USE_I18N = True
USE_TZ = True
# The panel's date and time formats per language ("1 Des 2026, 14.05" in Indonesian): panel/formats/.
FORMAT_MODULE_PATH = ["panel.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "static"))
# The browser libraries of the server page's consoles come from npm (package.json and its lock file; `make
# setup` runs `npm ci`): only the files the browser loads are served, under static/vendor/.
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/novnc/core", NODE_MODULES / "@novnc/novnc/core"),  # ES modules; they import ../vendor/pako
    ("vendor/novnc/vendor", NODE_MODULES / "@novnc/novnc/vendor"),
    ("vendor/xterm/lib", NODE_MODULES / "@xterm/xterm/lib"),
    ("vendor/xterm/css", NODE_MODULES / "@xterm/xterm/css"),
    ("vendor/xterm-addon-fit/lib", NODE_MODULES / "@xterm/addon-fit/lib"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG


# --- Email -----------------------------------------------------------------------------------------------

# Email: the console in development, SMTP when EMAIL_HOST is set.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
# With SMTP, web requests and billing runs queue their mails and a Celery worker delivers them
# (panel/mail.py), retrying when the mail server fails; MAIL_QUEUE=0 sends them at once instead.
if EMAIL_HOST:
    MAIL_DELIVERY_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_BACKEND = "panel.mail.QueuedEmailBackend" if env_bool("MAIL_QUEUE", True) else MAIL_DELIVERY_BACKEND
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = MAIL_DELIVERY_BACKEND = "django.core.mail.backends.console.EmailBackend"
MAIL_RETRY_SECONDS = int(os.environ.get("MAIL_RETRY_SECONDS", "60"))  # doubled on each failure
MAIL_RETRY_MAX_SECONDS = int(os.environ.get("MAIL_RETRY_MAX_SECONDS", "3600"))
MAIL_RETRY_LIMIT = int(os.environ.get("MAIL_RETRY_LIMIT", "24"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "panel@localhost")


# --- Abuse controls --------------------------------------------------------------------------------------

# Abuse controls (see README and panel/accounts/throttling.py). Rates are "count/period", e.g. "5/h",
# "1200/min", "100/15m"; an empty value or "none" turns a limit off.
LOGIN_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))  # failures per account → lock-out
LOGIN_IP_FAILURE_LIMIT = int(os.environ.get("LOGIN_IP_FAILURE_LIMIT", "20"))  # failures per address
LOGIN_FAILURE_WINDOW = int(os.environ.get("LOGIN_FAILURE_WINDOW", "900"))  # seconds the failures count in
LOGIN_LOCKOUT_SECONDS = int(os.environ.get("LOGIN_LOCKOUT_SECONDS", "60"))  # first lock-out, then doubled
LOGIN_LOCKOUT_MAX_SECONDS = int(os.environ.get("LOGIN_LOCKOUT_MAX_SECONDS", "3600"))
LOGIN_LOCKOUT_MEMORY = int(os.environ.get("LOGIN_LOCKOUT_MEMORY", "86400"))  # back-off remembered this long
SIGNUP_RATE = os.environ.get("SIGNUP_RATE", "5/h")  # sign-ups per client address
PASSWORD_RESET_RATE = os.environ.get("PASSWORD_RESET_RATE", "5/h")  # reset requests per client address
VERIFICATION_RESEND_RATE = os.environ.get("VERIFICATION_RESEND_RATE", "3/h")  # verification mails per account
EMAIL_VERIFICATION_MAX_AGE = int(os.environ.get("EMAIL_VERIFICATION_MAX_AGE", str(3 * 86400)))  # seconds
API_RATE = os.environ.get("API_RATE", "1200/min")  # API requests per user, all tokens (per address without)
API_TOKEN_LIMIT = int(os.environ.get("API_TOKEN_LIMIT", "20"))  # unexpired API tokens per account
# Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For is believed: behind them the
# client is the right-most forwarded address that is not one of them (panel/request_context.py). Limits per
# address count IPv6 clients per /64.
TRUSTED_PROXIES = [
    entry.strip() for entry in os.environ.get("TRUSTED_PROXIES", "").split(",") if entry.strip()
]


# --- Transport security ----------------------------------------------------------------------------------

# Transport security (docs/deployment.md lists the production environment that `check --deploy` passes).
# Outside debug and demo mode the panel assumes browsers reach it over TLS (directly or through a
# TLS-terminating proxy): plain-HTTP requests are redirected to HTTPS, HSTS is sent, cookies are secure.
# HTTPS=0 serves a panel over plain HTTP (a private network, the test suite): no redirect, no HSTS, no
# secure cookies.
HTTPS = env_bool("HTTPS", not (DEBUG or DEMO))
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (overwriting what clients send), the proxy's
# header tells Django the request came over HTTPS. Never set without such a proxy: clients could claim HTTPS.
if env_bool("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS") or (31536000 if HTTPS else 0))
# Both widen HSTS beyond the panel's own host name (preload is hard to undo): explicit opt-ins.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Cookies travel over HTTPS only when the panel is served over HTTPS (SECURE_COOKIES overrides).
SECURE_COOKIES = env_bool("SECURE_COOKIES", HTTPS)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LANGUAGE_COOKIE_SECURE = SECURE_COOKIES
# Scripts never read the cookies (htmx sends the CSRF token from the page, templates/base.html).
SESSION_COOKIE_HTTPONLY = CSRF_COOKIE_HTTPONLY = LANGUAGE_COOKIE_HTTPONLY = True


# --- REST API --------------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["panel.api.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "panel.api.errors.exception_handler",
    # Requests per user: API_RATE in "Abuse controls" below.
    "DEFAULT_THROTTLE_CLASSES": ["panel.api.throttling.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "VPS Panel API",
    "DESCRIPTION": "REST API v1 of the VPS panel: servers, actions, SSH keys, plans and hosts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1/",
    # Several models have a `status`; the server's gets a readable name (a collision warns in check --deploy).
    "ENUM_NAME_OVERRIDES": {
        "ServerStatusEnum": "panel.servers.states.Status",
        "ActionTypeEnum": "panel.servers.states.Task",
        "ActivityEventTypeEnum": "panel.models.ActivityEvent.Type",
        "ConsoleTypeEnum": "panel.console.models.ConsoleSession.Type",
        # An action's and a backup's status have the same four values.
        "OperationStatusEnum": "panel.servers.operation_states.Status",
    },
}


# --- Hosts and libvirt -----------------------------------------------------------------------------------

LIBVIRT_TIMEOUT = float(os.environ.get("LIBVIRT_TIMEOUT", "30"))
# Encryption of connection secrets, health checks, placement, IPv4 pools.
PANEL_ENCRYPTION_KEY = os.environ.get("PANEL_ENCRYPTION_KEY", "")
HOST_CHECK_INTERVAL = float(os.environ.get("HOST_CHECK_INTERVAL", "30"))
HOST_CHECK_TIMEOUT = float(os.environ.get("HOST_CHECK_TIMEOUT", "5"))
HOST_DOWN_AFTER_FAILURES = int(os.environ.get("HOST_DOWN_AFTER_FAILURES", "2"))
PLACEMENT_WEIGHER = os.environ.get("PLACEMENT_WEIGHER", "spread")  # spread (most free memory) or pack
IPV4_COOLDOWN_MINUTES = int(os.environ.get("IPV4_COOLDOWN_MINUTES", "60"))
# Reverse DNS: PTR records are published to a PowerDNS authoritative server through its HTTP API
# (hypervisor/powerdns.py) when POWERDNS_API_URL is set (e.g. http://127.0.0.1:8081); empty: the panel keeps
# the names but publishes nothing. The reverse zones (in-addr.arpa, ip6.arpa) must exist on that server.
POWERDNS_API_URL = os.environ.get("POWERDNS_API_URL", "").rstrip("/")
POWERDNS_API_KEY = os.environ.get("POWERDNS_API_KEY", "")
POWERDNS_SERVER_ID = os.environ.get("POWERDNS_SERVER_ID", "localhost")
POWERDNS_TTL = int(os.environ.get("POWERDNS_TTL", "3600"))  # seconds, of each PTR record
POWERDNS_TIMEOUT = float(os.environ.get("POWERDNS_TIMEOUT", "10"))  # seconds, per API request


# --- Servers and operations ------------------------------------------------------------------------------

OPERATION_DEADLINE = int(os.environ.get("OPERATION_DEADLINE", "1800"))
SHUTDOWN_TIMEOUT = int(os.environ.get("SHUTDOWN_TIMEOUT", "60"))
# How long a root password reset waits for the QEMU guest agent in the server to answer.
GUEST_AGENT_TIMEOUT = int(os.environ.get("GUEST_AGENT_TIMEOUT", "30"))
OPERATION_MAX_ATTEMPTS = int(os.environ.get("OPERATION_MAX_ATTEMPTS", "5"))
# The worker running an operation holds a lease on it for this many seconds, renewed by a heartbeat every
# third of it. The reaper (every half lease) sends an operation whose lease ran out to another worker, and a
# restarted worker sends again at once the operations its previous run held: a killed worker's operations
# resume within 1.5 leases (30 s by default) and the reaper's period.
OPERATION_LEASE_SECONDS = int(os.environ.get("OPERATION_LEASE_SECONDS", "20"))
# An operation recorded but not begun by any worker within this many seconds (its message was lost: the web
# process died before sending it, or the broker lost it) is sent again.
OPERATION_DISPATCH_SECONDS = int(os.environ.get("OPERATION_DISPATCH_SECONDS", "30"))
# At most this many heavy operations (create, rebuild, resize: disk and image copies) run at once on one
# host; more wait their turn in order of arrival, without holding a worker.
HOST_HEAVY_OPERATIONS = int(os.environ.get("HOST_HEAVY_OPERATIONS", "4"))
if OPERATION_LEASE_SECONDS < 3 or OPERATION_DISPATCH_SECONDS < OPERATION_LEASE_SECONDS:
    raise ImproperlyConfigured(
        "OPERATION_LEASE_SECONDS must be at least 3 and OPERATION_DISPATCH_SECONDS at least the lease."
    )
if HOST_HEAVY_OPERATIONS < 1:
    raise ImproperlyConfigured("HOST_HEAVY_OPERATIONS must be at least 1.")
# Image files (qcow2 disks, kernels, initrds) are read from this directory only (symlinks resolved).
IMAGE_DIR = Path(os.environ.get("IMAGE_DIR", DATA_DIR / "images"))
IMAGE_UPLOAD_TIMEOUT = float(os.environ.get("IMAGE_UPLOAD_TIMEOUT", "3600"))
SNAPSHOT_LIMIT = int(os.environ.get("SNAPSHOT_LIMIT", "3"))

# Backups (panel.backups, README "Backups"): the most backups a policy may keep and the retention a new
# policy starts with; the hour (in TIME_ZONE) over which scheduled backups are spread, one minute per
# server; how many days a deleted server's backups are kept (0: removed with it); at most how many
# incremental backups follow a full one; where a worker keeps the files it compresses or assembles.
BACKUP_RETENTION_MAX = int(os.environ.get("BACKUP_RETENTION_MAX", "14"))
BACKUP_RETENTION_DEFAULT = int(os.environ.get("BACKUP_RETENTION_DEFAULT", "7"))
BACKUP_HOUR = int(os.environ.get("BACKUP_HOUR", "2"))
BACKUP_DELETE_GRACE_DAYS = int(os.environ.get("BACKUP_DELETE_GRACE_DAYS", "7"))
BACKUP_CHAIN_MAX = int(os.environ.get("BACKUP_CHAIN_MAX", "6"))
# The Celery time limit of a backup, a restore or an order made from a backup (they copy whole disks).
BACKUP_TASK_TIME_LIMIT = int(os.environ.get("BACKUP_TASK_TIME_LIMIT", str(6 * 3600)))
BACKUP_SPOOL_DIR = Path(os.environ.get("BACKUP_SPOOL_DIR", DATA_DIR / "backup-spool"))
if not 1 <= BACKUP_RETENTION_DEFAULT <= BACKUP_RETENTION_MAX:
    raise ImproperlyConfigured("BACKUP_RETENTION_DEFAULT must be between 1 and BACKUP_RETENTION_MAX.")
if not 0 <= BACKUP_HOUR <= 23:
    raise ImproperlyConfigured("BACKUP_HOUR must be an hour of the day (0-23).")
# Migrations (panel.servers.migration): the bandwidth cap in MiB/s (0: none) and the time a live migration
# may take before it is aborted (the server stays where it was), unless the admin gives others; how many
# servers of a drain or an evacuation move at a time.
MIGRATION_MAX_BANDWIDTH_MIB = int(os.environ.get("MIGRATION_MAX_BANDWIDTH_MIB", "0"))
MIGRATION_TIMEOUT_SECONDS = int(os.environ.get("MIGRATION_TIMEOUT_SECONDS", "1800"))
HOST_MOVE_CONCURRENCY = int(os.environ.get("HOST_MOVE_CONCURRENCY", "2"))
if not 10 <= MIGRATION_TIMEOUT_SECONDS <= 86_400 or not 0 <= MIGRATION_MAX_BANDWIDTH_MIB <= 1_000_000:
    raise ImproperlyConfigured(
        "MIGRATION_TIMEOUT_SECONDS must be 10 to 86400 and MIGRATION_MAX_BANDWIDTH_MIB 0 to 1000000."
    )
if HOST_MOVE_CONCURRENCY < 1:
    raise ImproperlyConfigured("HOST_MOVE_CONCURRENCY must be at least 1.")
REBOOT_TIMEOUT = int(os.environ.get("REBOOT_TIMEOUT", "30"))

# Fault injection for crash tests: the worker pauses at the named step (see panel/faults.py).
FAULT_PAUSE_AT = os.environ.get("PANEL_FAULT_PAUSE_AT", "")


# The libvirt event listener (`manage.py listen_events`): how often it re-reads the hosts, and its reconnect
# back-off (doubling from the first delay up to the longest).
EVENTS_HOST_REFRESH_SECONDS = float(os.environ.get("EVENTS_HOST_REFRESH_SECONDS", "5"))
EVENTS_RECONNECT_MIN_SECONDS = float(os.environ.get("EVENTS_RECONNECT_MIN_SECONDS", "1"))
EVENTS_RECONNECT_MAX_SECONDS = float(os.environ.get("EVENTS_RECONNECT_MAX_SECONDS", "60"))

# --- Usage and metering ----------------------------------------------------------------------------------

METERING_INTERVAL = float(os.environ.get("METERING_INTERVAL", "300"))


# --- Billing ---------------------------------------------------------------------------------------------

# The installation's one currency.
PANEL_CURRENCY = os.environ.get("PANEL_CURRENCY", "IDR")

# Billing (see README): invoice-first or prepaid orders, due dates and dunning, proration.
BILLING_ORDER_POLICY = os.environ.get("BILLING_ORDER_POLICY", "invoice_first")  # or "prepaid"
INVOICE_DUE_DAYS = int(os.environ.get("INVOICE_DUE_DAYS", "7"))
INVOICE_REMIND_DAYS = int(os.environ.get("INVOICE_REMIND_DAYS", "3"))
BILLING_GRACE_DAYS = int(os.environ.get("BILLING_GRACE_DAYS", "3"))
# The hourly billing run sends the monthly renewals to the workers in tasks of this many accounts each.
BILLING_RENEWAL_BATCH = int(os.environ.get("BILLING_RENEWAL_BATCH", "50"))
BILLING_TERMINATE_DAYS = int(os.environ.get("BILLING_TERMINATE_DAYS", "14"))
BILLING_TERMINATION_WARNING_DAYS = int(os.environ.get("BILLING_TERMINATION_WARNING_DAYS", "3"))
PRORATE_DOWNGRADE_CREDIT = env_bool("PRORATE_DOWNGRADE_CREDIT", True)
BANK_TRANSFER_INSTRUCTIONS = os.environ.get("BANK_TRANSFER_INSTRUCTIONS", "")

# Tax (billing.tax): PPN as PMK 131/2024 computes it for these services: TAX_RATE percent of a tax base
# (DPP) that is TAX_BASE_FRACTION of the price, so 12 % of 11/12 (effectively 11 %). TAX_RATE=0: no tax.
# PRICES_INCLUDE_TAX: plan prices are what customers pay, tax included (the invoice shows what of it is
# tax); off, the tax is added on top. The invoice's tax is computed and rounded once, on its subtotal.
TAX_RATE = os.environ.get("TAX_RATE", "12")
TAX_BASE_FRACTION = os.environ.get("TAX_BASE_FRACTION", "11/12")
PRICES_INCLUDE_TAX = env_bool("PRICES_INCLUDE_TAX", True)
# PPh 23 withheld by company customers on services (percent of the price before tax): what staff are
# offered when they record a withholding slip.
WITHHOLDING_TAX_RATE = os.environ.get("WITHHOLDING_TAX_RATE", "2")

# Payment providers (billing.providers). Each is on when its secret is set; none: bank transfer only.
# Midtrans Snap: the server key, sandbox or production, and the base URLs of Snap and of the Core API
# (status checks); blank URLs are Midtrans's own for the mode.
MIDTRANS_SERVER_KEY = os.environ.get("MIDTRANS_SERVER_KEY", "")
MIDTRANS_IS_PRODUCTION = env_bool("MIDTRANS_IS_PRODUCTION", False)
MIDTRANS_SNAP_URL = os.environ.get("MIDTRANS_SNAP_URL", "")
MIDTRANS_API_URL = os.environ.get("MIDTRANS_API_URL", "")
# Xendit Invoices: the secret API key, the callback verification token, and the API base URL.
XENDIT_SECRET_KEY = os.environ.get("XENDIT_SECRET_KEY", "")
XENDIT_CALLBACK_TOKEN = os.environ.get("XENDIT_CALLBACK_TOKEN", "")
XENDIT_API_URL = os.environ.get("XENDIT_API_URL", "https://api.xendit.co")
# More providers: dotted paths of billing.providers.PaymentProvider classes.
PAYMENT_PROVIDERS = env_list("PAYMENT_PROVIDERS")
# How long a checkout may be paid, how long a call to a provider may take, and how often checkouts still
# pending are asked about (a notification that never arrived).
CHECKOUT_EXPIRY_MINUTES = int(os.environ.get("CHECKOUT_EXPIRY_MINUTES", "1440"))
PAYMENT_PROVIDER_TIMEOUT = float(os.environ.get("PAYMENT_PROVIDER_TIMEOUT", "10"))
CHECKOUT_POLL_INTERVAL = float(os.environ.get("CHECKOUT_POLL_INTERVAL", "300"))
# The smallest and largest top-up a customer may start.
TOP_UP_MIN = os.environ.get("TOP_UP_MIN", "10000")
TOP_UP_MAX = os.environ.get("TOP_UP_MAX", "100000000")

# Uploaded files (withholding slips): kept under the data directory and served to staff only.
MEDIA_ROOT = os.environ.get("MEDIA_ROOT", str(DATA_DIR / "media"))


# --- Celery: broker, task rules, periodic jobs -----------------------------------------------------------

# Redis is the broker and the cache; without REDIS_URL (the embedded demo) the broker is kombu's
# filesystem transport and the cache is in memory.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CELERY_BROKER_URL = "filesystem://"
    _broker_dir = DATA_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# The task rules (docs/architecture.md): the Operation row is the truth, so no result backend.
CELERY_TASK_IGNORE_RESULT = True
# Celery's Django fixup closes the database connection around every task unless this is set; panel/celery.py
# closes old and broken connections by CONN_MAX_AGE instead, as Django does between requests.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("TASK_SOFT_TIME_LIMIT", "900"))
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
if REDIS_URL:
    # Redelivery of unacknowledged tasks must wait longer than the longest task may run.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("BROKER_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 300))
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "panel")
# With REGION_QUEUES set, work on a host (its operations, reconcile, metering, probes) goes to the queue
# "<CELERY_QUEUE>.<region slug>", so that a worker group near each region serves only its hosts
# (`celery -A panel worker -Q panel.jakarta`); everything else stays on CELERY_QUEUE.
REGION_QUEUES = os.environ.get("REGION_QUEUES", "") not in ("", "0")
# With INVOICE_MAIL_QUEUE set, the invoice mails (a PDF rendered for each) go to that queue, served by
# workers of their own (`celery -A panel worker -Q <it>`), so that a billing run's thousands of mails
# never wait in line with the renewals, operations and periodic work.
INVOICE_MAIL_QUEUE = os.environ.get("INVOICE_MAIL_QUEUE", "")
if INVOICE_MAIL_QUEUE:
    CELERY_TASK_ROUTES = {"billing.tasks.mail_invoices": {"queue": INVOICE_MAIL_QUEUE}}
# A new server's first invoice is mailed this many seconds after the order: rendering its PDF (about an eighth
# of a second of CPU) then does not compete with the server's boot on a host that shares the panel's
# machine. The order leaves the mail to beat's sweep (billing.invoice_mail), which runs every
# INVOICE_MAIL_SWEEP_SECONDS; 0 sends it after the order's commit, as every other invoice's.
INVOICE_MAIL_DELAY_SECONDS = int(os.environ.get("INVOICE_MAIL_DELAY_SECONDS", "30"))
if INVOICE_MAIL_DELAY_SECONDS < 0:
    raise ImproperlyConfigured("INVOICE_MAIL_DELAY_SECONDS must be 0 or more.")
INVOICE_MAIL_SWEEP_SECONDS = 10.0
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# Every periodic job, in one place: the reaper, reconcile and host checks (state), metering and its
# roll-up (usage), the allocation audit, and the hourly billing run.
CELERY_BEAT_SCHEDULE = {
    "reap-stuck-operations": {
        "task": "panel.tasks.reap_stuck_operations",
        "schedule": max(1.0, OPERATION_LEASE_SECONDS / 2),
    },
    "reconcile-servers": {"task": "panel.tasks.reconcile_all_hosts", "schedule": 60.0},
    "check-hosts": {"task": "hypervisor.tasks.check_hosts", "schedule": HOST_CHECK_INTERVAL},
    "audit-allocations": {"task": "panel.tasks.audit_allocations", "schedule": 3600.0},
    "fold-pool-counts": {"task": "hypervisor.tasks.fold_pool_counts", "schedule": 60.0},
    "meter-hosts": {"task": "panel.tasks.meter_all_hosts", "schedule": METERING_INTERVAL},
    "rollup-usage": {"task": "panel.tasks.rollup_usage", "schedule": 3600.0},
    "billing-run": {"task": "billing.tasks.billing_run", "schedule": 3600.0},
    "poll-checkouts": {"task": "billing.tasks.poll_checkouts", "schedule": CHECKOUT_POLL_INTERVAL},
    "hand-on-due-invoice-mails": {
        "task": "billing.tasks.hand_on_due_invoice_mails",
        "schedule": INVOICE_MAIL_SWEEP_SECONDS,
    },
    "sync-reverse-dns": {"task": "panel.tasks.sync_reverse_dns", "schedule": 60.0},
    "apply-pending-network-filters": {"task": "panel.tasks.apply_pending_network_filters", "schedule": 20.0},
    "run-due-backups": {"task": "panel.tasks.run_due_backups", "schedule": 60.0},
    "prune-backups": {"task": "panel.tasks.prune_backups", "schedule": 300.0},
    "advance-host-moves": {"task": "panel.tasks.advance_host_moves", "schedule": 10.0},
}


# --- Logging ---------------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # WeasyPrint and the font tools it uses tell every step of every PDF at INFO.
    "loggers": {name: {"level": "WARNING"} for name in ("weasyprint", "fontTools")},
}

# The console proxy (`manage.py console_proxy`, docs/deployment.md): the address it listens on, the ws:// or
# wss:// URL browsers reach it at (blank: ws(s)://<the page's host>:<its port>/console, right for the demo and
# a single machine; behind a TLS proxy set e.g. wss://panel.example.com/console), how long a console token
# may wait to be used (at most 60 seconds), and origins other than the panel's own pages allowed to connect.
CONSOLE_BIND = os.environ.get("CONSOLE_BIND", "127.0.0.1:8001")
CONSOLE_URL = os.environ.get("CONSOLE_URL", "")
CONSOLE_TOKEN_TTL = int(os.environ.get("CONSOLE_TOKEN_TTL", "30"))
CONSOLE_ALLOWED_ORIGINS = env_list("CONSOLE_ALLOWED_ORIGINS")
