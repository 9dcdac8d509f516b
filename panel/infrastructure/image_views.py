"""OS images: staff see them; admins add and retire them. Registration goes through hypervisor.images."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_POST

from hypervisor import images
from hypervisor.models import Image
from panel.activity import log as activity
from panel.infrastructure.forms import ImageForm
from panel.models import ActivityEvent
from panel.roles import admin_required, staff_required


@staff_required
def image_list(request):
    is_admin = request.user.is_panel_admin
    form = ImageForm(request.POST or None) if is_admin else None
    if request.method == "POST":
        if not is_admin:
            raise PermissionDenied
        if form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    image = images.register_image(
                        data["slug"], data["path"], name=data["name"], os_family=data["os_family"],
                        kernel=data["kernel"], initrd=data["initrd"], cmdline=data["cmdline"],
                        purpose=data["purpose"],
                    )  # fmt: skip
                    _record_image(image, request.user, gettext_noop("Image %(name)s (%(slug)s) registered."))
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                if image.purpose == Image.Purpose.RESCUE:
                    messages.success(
                        request,
                        _("The rescue system %(name)s is ready for rescue mode.") % {"name": image.name},
                    )
                elif image.purpose == Image.Purpose.ISO:
                    messages.success(
                        request, _("The ISO image %(name)s is ready to attach.") % {"name": image.name}
                    )
                else:
                    messages.success(
                        request, _("The image %(name)s is ready to order.") % {"name": image.name}
                    )
                return redirect("image-list")
    return render(request, "panel/images/list.html", {"images": Image.objects.all(), "form": form})


@admin_required
@require_POST
def image_toggle(request, pk: int):
    image = get_object_or_404(Image, pk=pk)
    with transaction.atomic():
        Image.objects.filter(pk=pk).update(is_active=not image.is_active)
        _record_image(
            image,
            request.user,
            gettext_noop("Image %(name)s (%(slug)s) retired.")
            if image.is_active
            else gettext_noop("Image %(name)s (%(slug)s) offered again."),
        )
    return redirect("image-list")


def _record_image(image: Image, actor, summary: str) -> None:
    """An image change on the admins' audit log (images belong to no account)."""
    activity.record(
        ActivityEvent.Type.IMAGE_CHANGED,
        summary=summary,
        data={"name": image.name, "slug": image.slug},
        actor=actor,
        target=f"image:{image.pk}",
        staff_action=True,
    )
