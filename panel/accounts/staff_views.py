"""Staff pages about customers: the customer list and a customer's page (quotas, limits, servers)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from billing import ledger, page_context
from billing.money import currency
from panel.accounts import quotas
from panel.accounts.forms import QuotaForm
from panel.models import Server, User
from panel.roles import staff_required
from panel.servers.queries import attach_addresses

STAFF_CUSTOMERS_PER_PAGE = 50


def _live_server_count():
    """Each user's live servers, as a subquery of its own (next to the balance's, nothing multiplies)."""
    live = (
        Server.objects.filter(owner=OuterRef("pk"))
        .exclude(status=Server.Status.DELETED)
        .order_by()
        .values("owner")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(live, output_field=IntegerField()), 0)


@staff_required
def staff_customers(request):
    customers = ledger.annotate_balance(User.objects.annotate(server_count=_live_server_count()))
    query = request.GET.get("q", "").strip()
    if query:
        customers = customers.filter(email__icontains=query)
    page = Paginator(customers.order_by("email", "id"), STAFF_CUSTOMERS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "panel/staff/customers.html",
        {"customers": page.object_list, "page": page, "q": query, "currency": currency()},
    )


@staff_required
def customer_detail(request, pk: int):
    # The customer with their quota row (read once: the form and the quota table both use it; a customer
    # without one has the defaults, and set_limits makes the row when staff save).
    customer = get_object_or_404(User.objects.select_related("quota"), pk=pk)
    if request.method == "POST" and request.POST.get("action") == "lift_new_account_limits":
        return _lift_new_account_limits(request, customer)
    form = QuotaForm(request.POST or None, initial=quotas.own_limits(customer))
    if request.method == "POST" and form.is_valid():
        try:
            quotas.set_limits(customer, form.cleaned_data, by=request.user)
        except quotas.OwnAccount as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("The quota of %(email)s was saved.") % {"email": customer.email})
            return redirect("staff-customer", pk=pk)
    servers = attach_addresses(
        Server.objects.filter(owner=customer)
        .exclude(status=Server.Status.DELETED)
        .select_related("plan", "host")
    )
    # The Billing section's context (its balance is the one the header shows too, asked for once).
    context = page_context.staff_section_context(request, customer)
    context.update(
        {"form": form, "quota": quotas.quota_rows(customer), "servers": servers,
         "new_account_quota": quotas.new_account_rows(),
         # Shown only while the account has its new-account limits (it may take a query).
         "lift_amount": quotas.lift_amount() if customer.new_account_limits else None}
    )  # fmt: skip
    return render(request, "panel/staff/customer_detail.html", context)


def _lift_new_account_limits(request, customer: User):
    try:
        lifted = quotas.lift_new_account_limits(customer, by=request.user)
    except quotas.OwnAccount as exc:
        messages.error(request, exc.message)
        return redirect("staff-customer", pk=customer.pk)
    if lifted:
        messages.success(
            request, _("The new-account limits of %(email)s were lifted.") % {"email": customer.email}
        )
    else:
        messages.info(request, _("%(email)s has no new-account limits.") % {"email": customer.email})
    return redirect("staff-customer", pk=customer.pk)
