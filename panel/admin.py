from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from billing.models import LedgerEntry, Plan
from hypervisor.models import Allocation, Host, Image, Region
from panel.models import ApiToken, Operation, Server, SSHKey, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "role", "is_active", "date_joined"]
    list_filter = ["role", "is_active"]
    search_fields = ["email"]
    fieldsets = [
        (None, {"fields": ["email", "password", "role", "is_active"]}),
        ("Profile", {"fields": ["first_name", "last_name", "language", "last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "role", "password1", "password2"]})]


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "status", "task", "host", "region", "created_at"]
    list_filter = ["status", "region"]
    search_fields = ["name", "owner__email", "id"]
    readonly_fields = ["id", "status", "task", "power_state", "host"]


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ["id", "server", "type", "status", "attempts", "created_at", "finished_at"]
    list_filter = ["type", "status"]


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    """Hosts are managed on the panel's own pages; here their state machine's columns are read-only (a
    probe and the health check move them, panel.infrastructure.host_views and hypervisor.hosts)."""

    list_display = ["name", "uri", "region", "state", "enabled", "maintenance"]
    readonly_fields = ["state", "status_reason", "disabled_by"]


for model in (Plan, LedgerEntry, Region, Image, Allocation, ApiToken, SSHKey):
    admin.site.register(model)
