from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from panel import confirmation
from panel.accounts.forms import SSHKeyForm
from panel.accounts.ssh_keys import record_ssh_key
from panel.models import SSHKey


@login_required
def ssh_key_list(request):
    form = SSHKeyForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            key = form.save()
            record_ssh_key(key, added=True)
        messages.success(request, _("The key %(name)s was added.") % {"name": key.name})
        return redirect("ssh-keys")
    return render(
        request, "panel/ssh_keys.html", {"keys": SSHKey.objects.filter(owner=request.user), "form": form}
    )


@login_required
@require_POST
def ssh_key_delete(request, pk: int):
    key = get_object_or_404(SSHKey, pk=pk, owner=request.user)
    if not confirmation.is_confirmed(request):
        return confirmation.ask(
            request,
            title=_("Delete the SSH key %(name)s") % {"name": key.name},
            question=_(
                "Delete the SSH key %(name)s? Servers that have it keep it; new servers and rebuilds can no "
                "longer use it."
            )
            % {"name": key.name},
            confirm_label=_("Delete key"),
            cancel_url=reverse("ssh-keys"),
        )
    with transaction.atomic():
        record_ssh_key(key, added=False)
        key.delete()
    messages.success(request, _("The key %(name)s was removed.") % {"name": key.name})
    return redirect("ssh-keys")
