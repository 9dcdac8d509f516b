"""API v1: an invoice as PDF (`GET invoices/{id}/pdf/`), the same document the invoice page downloads, in
the token owner's language."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.views import APIView

from billing import pdf
from billing.models import Invoice


class PdfRenderer(BaseRenderer):
    """Lets a client ask for `Accept: application/pdf`; the PDF itself is the view's response."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class InvoicePdf(APIView):
    """One of the token owner's invoices as a PDF (A4): the seller and buyer with their tax IDs, the lines,
    subtotal, tax base, VAT and total, the tax withheld, and how to pay it while it is open. 404 for
    another customer's invoice."""

    renderer_classes = [JSONRenderer, PdfRenderer]

    def handle_exception(self, exc):
        # Errors are JSON whatever the client accepts.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)

    @extend_schema(
        operation_id="invoices_pdf",
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="the invoice as PDF"),
            404: OpenApiResponse(description="no such invoice of the token's owner"),
        },
    )
    def get(self, request, pk: int) -> HttpResponse:
        invoice = get_object_or_404(
            Invoice.objects.exclude(status=Invoice.Status.DRAFT).select_related("account"),
            pk=pk,
            account=request.user,
        )
        response = HttpResponse(pdf.invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=pdf.filename(invoice)
        )
        return response
