from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from panel.api import (
    account_views,
    address_views,
    backup_views,
    console_views,
    firewall_views,
    host_move_views,
    invoice_views,
    ip_pool_views,
    migration_views,
    rdns_views,
    top_up_views,
    views,
)
from panel.api.errors import not_found_view

urlpatterns = [
    path(
        "schema/",
        SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]),
        name="api-schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(
            url_name="api-schema", permission_classes=[], authentication_classes=[]
        ),
        name="api-docs",
    ),
    path("regions/", views.RegionList.as_view(), name="api-regions"),
    path("plans/", views.PlanList.as_view(), name="api-plans"),
    path("images/", views.ImageList.as_view(), name="api-images"),
    path("isos/", views.IsoList.as_view(), name="api-isos"),
    path("ssh-keys/", views.SSHKeyList.as_view(), name="api-ssh-keys"),
    path("ssh-keys/<int:pk>/", views.SSHKeyDetail.as_view(), name="api-ssh-key"),
    path("servers/", views.ServerList.as_view(), name="api-servers"),
    path("servers/<uuid:pk>/", views.ServerDetail.as_view(), name="api-server"),
    path("servers/<uuid:pk>/actions/", views.ServerActionList.as_view(), name="api-server-actions"),
    path("servers/<uuid:pk>/snapshots/", views.ServerSnapshotList.as_view(), name="api-server-snapshots"),
    path("servers/<uuid:pk>/usage/", views.ServerUsage.as_view(), name="api-server-usage"),
    path("servers/<uuid:pk>/console/", console_views.ServerConsole.as_view(), name="api-server-console"),
    path("servers/<uuid:pk>/rdns/", rdns_views.ServerReverseDns.as_view(), name="api-server-rdns"),
    path("servers/<uuid:pk>/firewall/", firewall_views.ServerFirewall.as_view(), name="api-server-firewall"),
    # -- addresses (additional IPv4 addresses are added, moved and removed here)
    path(
        "servers/<uuid:pk>/addresses/", address_views.ServerAddressList.as_view(), name="api-server-addresses"
    ),
    path(
        "servers/<uuid:pk>/addresses/<str:ip>/",
        address_views.ServerAddressDetail.as_view(),
        name="api-server-address",
    ),
    path(
        "servers/<uuid:pk>/addresses/<str:ip>/move/",
        address_views.ServerAddressMove.as_view(),
        name="api-server-address-move",
    ),
    # -- backups (taken and restored through the actions)
    path(
        "servers/<uuid:pk>/backup-policy/",
        backup_views.ServerBackupPolicy.as_view(),
        name="api-server-backup-policy",
    ),
    path("servers/<uuid:pk>/backups/", backup_views.ServerBackupList.as_view(), name="api-server-backups"),
    path(
        "servers/<uuid:pk>/actions/<uuid:action_id>/",
        views.ServerActionDetail.as_view(),
        name="api-server-action",
    ),
    path("account/", views.Account.as_view(), name="api-account"),
    path("invoices/", views.InvoiceList.as_view(), name="api-invoices"),
    path("invoices/<int:pk>/", views.InvoiceDetail.as_view(), name="api-invoice"),
    # -- invoice PDFs
    path("invoices/<int:pk>/pdf/", invoice_views.InvoicePdf.as_view(), name="api-invoice-pdf"),
    # -- top-ups
    path("account/top-ups/", top_up_views.TopUpList.as_view(), name="api-top-ups"),
    path("account/top-ups/<int:pk>/", top_up_views.TopUpDetail.as_view(), name="api-top-up"),
    path("admin/hosts/", views.AdminHostList.as_view(), name="api-admin-hosts"),
    path("admin/hosts/<int:pk>/", views.AdminHostDetail.as_view(), name="api-admin-host"),
    path(
        "admin/hosts/<int:pk>/drain/", host_move_views.AdminHostDrain.as_view(), name="api-admin-host-drain"
    ),
    path(
        "admin/hosts/<int:pk>/evacuate/",
        host_move_views.AdminHostEvacuate.as_view(),
        name="api-admin-host-evacuate",
    ),
    path("admin/ip-pools/", ip_pool_views.AdminIPPoolList.as_view(), name="api-admin-ip-pools"),
    path("admin/ip-pools/<int:pk>/", ip_pool_views.AdminIPPoolDetail.as_view(), name="api-admin-ip-pool"),
    path("admin/servers/", views.AdminServerList.as_view(), name="api-admin-servers"),
    path(
        "admin/servers/<uuid:pk>/migrate/",
        migration_views.AdminServerMigrate.as_view(),
        name="api-admin-server-migrate",
    ),
    path("admin/customers/", views.AdminCustomerList.as_view(), name="api-admin-customers"),
    path(
        "admin/customers/<int:pk>/payments/", views.AdminCustomerPayments.as_view(), name="api-admin-payments"
    ),
    path(
        "admin/customers/<int:pk>/quota/", views.AdminCustomerQuota.as_view(), name="api-admin-customer-quota"
    ),
    path("tokens/", account_views.TokenList.as_view(), name="api-tokens"),
    path("tokens/<int:pk>/", account_views.TokenDetail.as_view(), name="api-token"),
    path("account/events/", account_views.AccountEventList.as_view(), name="api-account-events"),
    path("admin/events/", account_views.AdminEventList.as_view(), name="api-admin-events"),
    re_path(r"^.*$", not_found_view),
]
