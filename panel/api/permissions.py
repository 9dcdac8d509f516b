from rest_framework.permissions import SAFE_METHODS, BasePermission


class IsPanelStaff(BasePermission):
    """Staff and admins; customers get 403."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_panel_staff)


class IsAdminOrReadOnlyStaff(BasePermission):
    """Staff may read; only admins may create or change (hosts)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_panel_staff):
            return False
        return request.method in SAFE_METHODS or user.is_panel_admin


class IsPanelAdmin(BasePermission):
    """Admins only; staff and customers get 403."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_panel_admin)
