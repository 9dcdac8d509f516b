"""The staff forms of the invoice page: record a withholding slip (PPh 23) with an optional scan, and issue
a credit note for (part of) a paid invoice. They check what was typed; the services (billing.withholding,
billing.credit_notes) check it against the invoice."""

from __future__ import annotations

import os
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from billing.forms import _check_precision, _money_field, _money_widget_attrs

# A scan of a withholding slip: at most this big, and one of these types, told by its first bytes (not by
# what the browser says it is).
MAX_SCAN_BYTES = 5 * 1024 * 1024
SCAN_SIGNATURES = {
    ".pdf": b"%PDF-",
    ".jpg": b"\xff\xd8\xff",
    ".jpeg": b"\xff\xd8\xff",
    ".png": b"\x89PNG\r\n\x1a\n",
}
SCAN_ACCEPT = "application/pdf,image/jpeg,image/png,.pdf,.jpg,.jpeg,.png"


def _signature_of(upload: UploadedFile) -> str | None:
    """The extension the file's first bytes say it has (".pdf", ".jpg", ".png"), or None."""
    upload.seek(0)
    head = upload.read(8)
    upload.seek(0)
    for extension, signature in SCAN_SIGNATURES.items():
        if head.startswith(signature):
            return extension
    return None


class WithholdingSlipForm(forms.Form):
    number = forms.CharField(
        label=_("Slip number"),
        max_length=64,
        help_text=_("The number printed on the withholding slip (bukti potong PPh 23)."),
    )
    amount = _money_field(_("Amount withheld"), min_value=Decimal("0.01"))
    scan = forms.FileField(
        label=_("Scan of the slip"),
        required=False,
        help_text=_("Optional: PDF, JPEG or PNG, at most 5 MB. Only staff can open it."),
        widget=forms.FileInput(attrs={"accept": SCAN_ACCEPT}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _money_widget_attrs(self.fields["amount"])

    def clean_amount(self) -> Decimal:
        return _check_precision(self.cleaned_data["amount"])

    def clean_scan(self) -> UploadedFile | None:
        scan = self.cleaned_data.get("scan")
        if not scan:
            return None
        if scan.size > MAX_SCAN_BYTES:
            raise ValidationError(_("The scan is larger than 5 MB: scan it at a lower resolution."))
        extension = os.path.splitext(scan.name)[1].lower()
        kind = _signature_of(scan)
        if kind is None or SCAN_SIGNATURES.get(extension) != SCAN_SIGNATURES[kind]:
            raise ValidationError(_("The scan must be a PDF, JPEG or PNG file."))
        return scan

    def clean(self):
        cleaned = super().clean()
        scan, number = cleaned.get("scan"), cleaned.get("number")
        if scan and number:
            # Stored under a name of our making (the slip's number), never the uploader's.
            scan.name = f"{slugify(number)[:40] or 'slip'}{_signature_of(scan)}"
        return cleaned


class CreditNoteForm(forms.Form):
    amount = _money_field(_("Amount to credit"), min_value=Decimal("0.01"))
    reason = forms.CharField(
        label=_("Reason"),
        max_length=200,
        help_text=_("Printed on the credit note the customer receives, e.g. a service not delivered."),
    )

    def __init__(self, *args, creditable: Decimal | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        _money_widget_attrs(self.fields["amount"])
        if creditable is not None:
            self.fields["amount"].widget.attrs["max"] = str(creditable)

    def clean_amount(self) -> Decimal:
        return _check_precision(self.cleaned_data["amount"])
