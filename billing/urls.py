"""Billing's pages: the customer's (balance, top-up, invoices), the staff's (a customer's payments,
adjustments and terms, invoices, the overdue list, the settings) and the payment providers' webhooks.
Included by panel/urls.py."""

from django.urls import path

from billing import staff_views, views

urlpatterns = [
    path("billing/", views.billing_overview, name="billing"),
    path("billing/top-up/", views.top_up, name="billing-top-up"),
    path("billing/invoices/<int:pk>/", views.invoice_detail, name="invoice"),
    # -- customer payments: checkouts, paying an invoice, billing details
    # -- invoice documents: PDFs, credit notes, withholding slips
    # -- tax export
    path("staff/customers/<int:pk>/payments/", staff_views.staff_record_payment, name="staff-record-payment"),
    path("staff/customers/<int:pk>/adjustments/", staff_views.staff_adjust, name="staff-adjust"),
    path(
        "staff/customers/<int:pk>/billing-terms/",
        staff_views.staff_billing_terms,
        name="staff-billing-terms",
    ),
    path("staff/invoices/<int:pk>/", staff_views.staff_invoice_detail, name="staff-invoice"),
    path("staff/invoices/<int:pk>/void/", staff_views.staff_void_invoice, name="staff-invoice-void"),
    path("staff/overdue/", staff_views.overdue, name="staff-overdue"),
    path("staff/billing-settings/", staff_views.billing_settings, name="billing-settings"),
    # -- provider webhooks
]
