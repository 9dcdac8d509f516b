from django.contrib import admin
from django.urls import include, path

from billing import views as billing_views

from .views import accounts, audit, billing, images, ip_pools, servers, ssh_keys, staff, two_factor, usage
from .views import login as login_views


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
    path("account/two-factor/", two_factor.setup, name="two-factor-setup"),
    path("account/two-factor/recovery-codes/", two_factor.recovery_codes, name="two-factor-recovery-codes"),
    path("account/two-factor/remove/", two_factor.remove, name="two-factor-remove"),
    path("account/tokens/<int:pk>/revoke/", accounts.revoke_token, name="token-revoke"),
    path("account/activity/", accounts.account_activity, name="account-activity"),
    path("servers/", servers.server_list, name="server-list"),
    path("servers/new/", servers.server_order, name="server-order"),
    path("servers/<uuid:pk>/", servers.server_detail, name="server-detail"),
    path("servers/<uuid:pk>/status/", servers.server_status, name="server-status"),
    path("servers/<uuid:pk>/action/", servers.server_action, name="server-action"),
    path("servers/<uuid:pk>/ptr/", servers.server_ptr, name="server-ptr"),
    path("servers/<uuid:pk>/usage/", usage.server_usage, name="server-usage"),
    path("billing/", billing.billing_overview, name="billing"),
    path("billing/top-up/", billing.top_up, name="billing-top-up"),
    path("billing/invoices/<int:pk>/", billing.invoice_detail, name="invoice"),
    path("ssh-keys/", ssh_keys.ssh_key_list, name="ssh-keys"),
    path("ssh-keys/<int:pk>/delete/", ssh_keys.ssh_key_delete, name="ssh-key-delete"),
    path("staff/servers/", staff.staff_servers, name="staff-servers"),
    path("staff/customers/", staff.staff_customers, name="staff-customers"),
    path("staff/customers/<int:pk>/", staff.customer_detail, name="staff-customer"),
    path("staff/servers/<uuid:pk>/traffic-block/", usage.add_traffic_block, name="staff-traffic-block"),
    path("staff/customers/<int:pk>/payments/", billing.staff_record_payment, name="staff-record-payment"),
    path("staff/customers/<int:pk>/adjustments/", billing.staff_adjust, name="staff-adjust"),
    path("staff/customers/<int:pk>/billing-terms/", billing.staff_billing_terms, name="staff-billing-terms"),
    path("staff/invoices/<int:pk>/", billing.staff_invoice_detail, name="staff-invoice"),
    path("staff/invoices/<int:pk>/void/", billing.staff_void_invoice, name="staff-invoice-void"),
    path("staff/overdue/", billing.overdue, name="staff-overdue"),
    path("staff/billing-settings/", billing.billing_settings, name="billing-settings"),
    path("staff/hosts/", staff.host_list, name="host-list"),
    path("staff/hosts/<int:pk>/", staff.host_detail, name="host-detail"),
    path("staff/hosts/<int:pk>/action/", staff.host_action, name="host-action"),
    path("staff/hosts/<int:pk>/settings/", staff.host_settings, name="host-settings"),
    path("staff/hosts/<int:pk>/usage/", usage.host_usage, name="host-usage"),
    path("staff/ip-pools/", ip_pools.pool_list, name="ip-pool-list"),
    path("staff/ip-pools/<int:pk>/", ip_pools.pool_detail, name="ip-pool-detail"),
    path("staff/images/", images.image_list, name="image-list"),
    path("staff/audit/", audit.audit_log, name="staff-audit"),
    path("staff/images/<int:pk>/toggle/", images.image_toggle, name="image-toggle"),
    path("billing/webhooks/<slug:provider>/", billing_views.webhook, name="billing-webhook"),
    path("api/v1/", include("panel.api.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("django-admin/", admin.site.urls),
]
