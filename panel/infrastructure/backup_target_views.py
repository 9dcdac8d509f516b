"""Backup targets: admins add and change them, choose each region's target and check that a target answers;
staff may look. State changes go through panel.infrastructure.backup_targets."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from hypervisor import credentials
from hypervisor.models import BackupTarget, Region
from panel.infrastructure import backup_targets
from panel.infrastructure.forms import (
    BackupTargetEditForm,
    BackupTargetForm,
    RegionBackupTargetForm,
    add_service_error,
)
from panel.models import Backup
from panel.roles import admin_required, staff_required


def _targets():
    return (
        BackupTarget.objects.select_related("host")
        .prefetch_related("regions")
        .annotate(kept=Count("backups", filter=Q(backups__status=Backup.Status.SUCCEEDED)))
        .order_by("name")
    )


def _regions() -> list[Region]:
    return list(Region.objects.select_related("backup_target").order_by("name"))


@staff_required
def target_list(request: HttpRequest) -> HttpResponse:
    """Every target with the regions backing up to it; admins add one with the form (POST here)."""
    is_admin = request.user.is_panel_admin
    form = BackupTargetForm(request.POST or None) if is_admin else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied
        if form.is_valid():
            try:
                target = backup_targets.create_target(request.user, **form.create_kwargs())
            except ValidationError as exc:
                add_service_error(form, exc, backup_targets.ERROR_FIELDS)
            else:
                messages.success(request, _("The backup target %(name)s was added.") % {"name": target.name})
                return redirect("backup-target-detail", pk=target.pk)
    return render(
        request,
        "panel/backup_targets/list.html",
        {
            "targets": _targets(),
            "regions": _regions(),
            "choices": list(BackupTarget.objects.filter(is_active=True).order_by("name")),
            "form": form,
            # The key an SSH target's user must accept (the first call makes the panel's key pair).
            "authorized_keys_line": credentials.authorized_keys_line() if is_admin else "",
        },
    )


@staff_required
def target_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One target: where it keeps backups, its recorded host keys, the regions using it; admins change it
    with the form on the page (POST here)."""
    target = get_object_or_404(_targets(), pk=pk)
    form = None
    if request.user.is_panel_admin:
        form = BackupTargetEditForm.for_target(target, request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form is None:
            raise PermissionDenied
        if form.is_valid():
            try:
                saved = backup_targets.update_target(target, request.user, **form.update_kwargs())
            except ValidationError as exc:
                add_service_error(form, exc, backup_targets.ERROR_FIELDS)
            else:
                messages.success(request, _("The backup target %(name)s was saved.") % {"name": saved.name})
                return redirect("backup-target-detail", pk=target.pk)
    return render(
        request,
        "panel/backup_targets/detail.html",
        {
            "target": target,
            "where": backup_targets.where(target),
            "host_key_fingerprints": credentials.host_key_fingerprints(target.ssh_host_keys),
            "form": form,
        },
    )


@admin_required
@require_POST
def target_check(request: HttpRequest, pk: int) -> HttpResponse:
    """Have a worker check that the panel reaches the target and may write there (a web request never talks
    to libvirt or SSH); the target's page shows the outcome when it is recorded."""
    target = get_object_or_404(BackupTarget, pk=pk)
    backup_targets.check_later(target)
    messages.info(
        request,
        _("Checking %(name)s: reload this page in a few seconds to see the outcome.") % {"name": target.name},
    )
    return redirect("backup-target-detail", pk=target.pk)


@admin_required
@require_POST
def region_target(request: HttpRequest) -> HttpResponse:
    """Choose a region's backup target (posted from the targets page)."""
    form = RegionBackupTargetForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("backup-target-list")
    region, target = form.cleaned_data["region"], form.cleaned_data["target"]
    try:
        backup_targets.set_region_target(request.user, region, target)
    except ValidationError as exc:
        for error in exc.messages:
            messages.error(request, error)
    else:
        if target is None:
            messages.success(
                request, _("Backups are now unavailable in %(region)s.") % {"region": region.name}
            )
        else:
            messages.success(
                request,
                _("The servers of %(region)s are backed up to %(name)s now.")
                % {"region": region.name, "name": target.name},
            )
    return redirect("backup-target-list")
