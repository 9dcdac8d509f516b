"""Billing's pages: the customer's (balance, top-up, invoices), the staff's (a customer's payments,
adjustments and terms, invoices, the overdue list, the settings) and the payment providers' webhooks.
Included by panel/urls.py."""

from django.urls import path

from billing import (
    checkout_views,
    document_views,
    export_views,
    invoice_staff_views,
    staff_views,
    views,
    webhook_views,
)

urlpatterns = [
    path("billing/", views.billing_overview, name="billing"),
    path("billing/top-up/", views.top_up, name="billing-top-up"),
    path("billing/invoices/<int:pk>/", views.invoice_detail, name="invoice"),
    # -- customer payments: checkouts, paying an invoice, billing details
    path("billing/invoices/<int:pk>/pay/", checkout_views.invoice_pay, name="billing-invoice-pay"),
    path("billing/checkouts/<int:pk>/", checkout_views.checkout_detail, name="billing-checkout"),
    path(
        "billing/checkouts/<int:pk>/status/", checkout_views.checkout_status, name="billing-checkout-status"
    ),
    path("billing/details/", views.billing_details, name="billing-details"),
    path("staff/bank-transfers/", staff_views.bank_transfers, name="staff-bank-transfers"),
    # -- invoice documents: PDFs, credit notes, withholding slips
    path("billing/invoices/<int:pk>/pdf/", document_views.invoice_pdf, name="invoice-pdf"),
    path("billing/credit-notes/<int:pk>/pdf/", document_views.credit_note_pdf, name="credit-note-pdf"),
    path("staff/invoices/<int:pk>/pdf/", document_views.staff_invoice_pdf, name="staff-invoice-pdf"),
    path(
        "staff/credit-notes/<int:pk>/pdf/", document_views.staff_credit_note_pdf, name="staff-credit-note-pdf"
    ),
    path(
        "staff/invoices/<int:pk>/withholding-slips/",
        invoice_staff_views.staff_record_withholding,
        name="staff-invoice-withholding",
    ),
    path(
        "staff/invoices/<int:pk>/credit-notes/",
        invoice_staff_views.staff_issue_credit_note,
        name="staff-invoice-credit-note",
    ),
    path(
        "staff/withholding-slips/<int:pk>/scan/",
        document_views.staff_withholding_scan,
        name="staff-withholding-scan",
    ),
    # -- tax export
    path("staff/tax-export/", export_views.tax_export_page, name="staff-tax-export"),
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
    path(
        "staff/billing-settings/addon-prices/", staff_views.billing_addon_prices, name="billing-addon-prices"
    ),
    # -- provider webhooks
    path("billing/webhooks/<slug:provider>/", webhook_views.webhook, name="billing-webhook"),
]
