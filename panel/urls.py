"""The panel's URLs: each app's pages (accounts, servers, usage, infrastructure, billing) and the API."""

from django.contrib import admin
from django.urls import include, path

from panel.accounts import login_views, ssh_key_views, two_factor_views
from panel.accounts import staff_views as customer_staff
from panel.accounts import views as accounts
from panel.activity import views as audit
from panel.backups import views as backups
from panel.console import staff_views as console_staff
from panel.console import views as console
from panel.infrastructure import backup_target_views, host_move_views, host_views, image_views, ip_pool_views
from panel.servers import address_views as server_addresses
from panel.servers import firewall_views as firewall
from panel.servers import staff_views as server_staff
from panel.servers import views as servers
from panel.usage import views as usage


def _admins_only(request) -> bool:
    """Admins who have shown their second factor in this session (django-otp's `is_verified`)."""
    user = request.user
    verified = getattr(user, "is_verified", None)
    return user.is_active and getattr(user, "is_panel_admin", False) and verified is not None and verified()


admin.site.has_permission = _admins_only
admin.site.login = login_views.admin_login  # the panel's own two-step login
admin.site.site_header = "VPS Panel administration"

urlpatterns = [
    path("", accounts.home, name="home"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/verify/resend/", accounts.resend_verification, name="verify-email-resend"),
    path("accounts/verify/<str:token>/", accounts.verify_email, name="verify-email"),
    path("accounts/password_change/", accounts.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_reset/", accounts.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/reset/<uidb64>/<token>/",
        accounts.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/login/", login_views.login_view, name="login"),
    path("accounts/login/code/", login_views.login_code, name="login-code"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("account/", accounts.account, name="account"),
    path("account/language/", accounts.account_language, name="account-language"),
    path("account/two-factor/", two_factor_views.setup, name="two-factor-setup"),
    path(
        "account/two-factor/recovery-codes/",
        two_factor_views.recovery_codes,
        name="two-factor-recovery-codes",
    ),
    path("account/two-factor/remove/", two_factor_views.remove, name="two-factor-remove"),
    path("account/tokens/<int:pk>/revoke/", accounts.revoke_token, name="token-revoke"),
    path("account/activity/", accounts.account_activity, name="account-activity"),
    path("servers/", servers.server_list, name="server-list"),
    path("servers/new/", servers.server_order, name="server-order"),
    path("servers/<uuid:pk>/", servers.server_detail, name="server-detail"),
    path("servers/<uuid:pk>/status/", servers.server_status, name="server-status"),
    path("servers/<uuid:pk>/action/", servers.server_action, name="server-action"),
    path("servers/<uuid:pk>/ptr/", servers.server_ptr, name="server-ptr"),
    path("servers/<uuid:pk>/addresses/add/", server_addresses.server_address_add, name="server-address-add"),
    path(
        "servers/<uuid:pk>/addresses/remove/",
        server_addresses.server_address_remove,
        name="server-address-remove",
    ),
    path(
        "servers/<uuid:pk>/addresses/move/", server_addresses.server_address_move, name="server-address-move"
    ),
    path("servers/<uuid:pk>/firewall/", firewall.server_firewall, name="server-firewall"),
    path("servers/<uuid:pk>/backups/", backups.server_backups, name="server-backups"),
    path("servers/<uuid:pk>/backups/list/", backups.server_backup_list, name="server-backup-list"),
    path("servers/<uuid:pk>/backups/now/", backups.server_backup_now, name="server-backup-now"),
    path(
        "servers/<uuid:pk>/backups/<int:backup_id>/restore/",
        backups.server_backup_restore,
        name="server-backup-restore",
    ),
    path("servers/<uuid:pk>/usage/", usage.server_usage, name="server-usage"),
    path("servers/<uuid:pk>/console/", console.server_console, name="server-console"),
    path(
        "servers/<uuid:pk>/console/<str:console_type>/token/",
        console.server_console_token,
        name="server-console-token",
    ),
    path(
        "servers/<uuid:pk>/console/<str:console_type>/window/",
        console.server_console_window,
        name="server-console-window",
    ),
    path("ssh-keys/", ssh_key_views.ssh_key_list, name="ssh-keys"),
    path("ssh-keys/<int:pk>/delete/", ssh_key_views.ssh_key_delete, name="ssh-key-delete"),
    path("staff/servers/", server_staff.staff_servers, name="staff-servers"),
    path("staff/servers/<uuid:pk>/", server_staff.staff_server, name="staff-server"),
    path("staff/servers/<uuid:pk>/action/", server_staff.staff_server_action, name="staff-server-action"),
    path("staff/servers/<uuid:pk>/migrate/", server_staff.staff_server_migrate, name="staff-server-migrate"),
    path(
        "staff/servers/<uuid:pk>/firewall/reset/",
        firewall.staff_firewall_reset,
        name="staff-server-firewall-reset",
    ),
    path("staff/servers/<uuid:pk>/console/", console_staff.staff_server_console, name="staff-server-console"),
    path(
        "staff/servers/<uuid:pk>/console/<str:console_type>/token/",
        console_staff.staff_server_console_token,
        name="staff-server-console-token",
    ),
    path(
        "staff/servers/<uuid:pk>/console/<str:console_type>/window/",
        console_staff.staff_server_console_window,
        name="staff-server-console-window",
    ),
    path("staff/customers/", customer_staff.staff_customers, name="staff-customers"),
    path("staff/customers/<int:pk>/", customer_staff.customer_detail, name="staff-customer"),
    path("staff/servers/<uuid:pk>/traffic-block/", usage.add_traffic_block, name="staff-traffic-block"),
    path("staff/hosts/", host_views.host_list, name="host-list"),
    path("staff/hosts/<int:pk>/", host_views.host_detail, name="host-detail"),
    path("staff/hosts/<int:pk>/action/", host_views.host_action, name="host-action"),
    path("staff/hosts/<int:pk>/settings/", host_views.host_settings, name="host-settings"),
    path("staff/hosts/<int:pk>/drain/", host_move_views.host_drain, name="host-drain"),
    path("staff/hosts/<int:pk>/evacuate/", host_move_views.host_evacuate, name="host-evacuate"),
    path("staff/hosts/<int:pk>/move/", host_move_views.host_move, name="host-move"),
    path("staff/hosts/<int:pk>/usage/", usage.host_usage, name="host-usage"),
    path("staff/ip-pools/", ip_pool_views.pool_list, name="ip-pool-list"),
    path("staff/ip-pools/<int:pk>/", ip_pool_views.pool_detail, name="ip-pool-detail"),
    path("staff/backup-targets/", backup_target_views.target_list, name="backup-target-list"),
    path("staff/backup-targets/regions/", backup_target_views.region_target, name="backup-target-region"),
    path("staff/backup-targets/<int:pk>/", backup_target_views.target_detail, name="backup-target-detail"),
    path(
        "staff/backup-targets/<int:pk>/check/", backup_target_views.target_check, name="backup-target-check"
    ),
    path("staff/images/", image_views.image_list, name="image-list"),
    path("staff/audit/", audit.audit_log, name="staff-audit"),
    path("staff/images/<int:pk>/toggle/", image_views.image_toggle, name="image-toggle"),
    path("api/v1/", include("panel.api.urls")),
    path("", include("billing.urls")),
    # Django's language switch, which also saves a logged-in user's choice to the account.
    path("i18n/setlang/", accounts.set_language, name="set_language"),
    path("django-admin/", admin.site.urls),
]
