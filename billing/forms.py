"""Billing forms: top-up, billing details, staff payments and adjustments, billing terms, the seller's
profile, the add-on prices, looking up a bank transfer; money fields that know the currency's precision."""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from billing import buyer, checkouts, seller
from billing.errors import BillingError
from billing.models import AddonKind, SellerProfile
from billing.money import CURRENCY_EXPONENTS, currency, quantize


def _money_field(label, *, min_value=None, required: bool = True, help_text: str = "") -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        min_value=min_value,
        max_digits=14,
        decimal_places=4,
        required=required,
        help_text=help_text,
    )


def _check_precision(amount: Decimal | None) -> Decimal | None:
    """Refuse an amount finer than the currency allows (a fraction of a rupiah, a tenth of a cent)."""
    if amount is None:
        return None
    if quantize(amount) != amount:
        places = CURRENCY_EXPONENTS.get(currency(), 2)
        if places == 0:
            raise ValidationError(
                _("%(currency)s has no minor unit: give a whole amount.") % {"currency": currency()}
            )
        raise ValidationError(
            _("Give at most %(places)s decimals.") % {"places": places},
        )
    return amount


def _money_widget_attrs(field: forms.Field) -> None:
    """The browser's number input steps by the currency's smallest unit. A step counts from `min`, so a
    positive minimum is that unit too (min 0.01 with step 1 would refuse every whole rupiah)."""
    places = CURRENCY_EXPONENTS.get(currency(), 2)
    unit = "1" if places == 0 else f"0.{'0' * (places - 1)}1"
    field.widget.attrs.update({"step": unit, "inputmode": "decimal"})
    if field.widget.attrs.get("min") not in (None, "0"):
        field.widget.attrs["min"] = unit


class TopUpForm(forms.Form):
    """A customer adds credit through a payment provider: the amount (within the top-up limits) and the
    provider, one of those configured (`providers`, billing.providers.available())."""

    amount = _money_field(_("Amount"), min_value=Decimal("0.01"))
    provider = forms.ChoiceField(
        label=_("Pay with"),
        widget=forms.RadioSelect,
        error_messages={
            "required": _("Choose how to pay."),
            "invalid_choice": _("This payment provider is not available; choose another."),
        },
    )

    def __init__(self, *args, providers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.providers = list(providers)
        self.fields["provider"].choices = [(p.name, p.label or p.name) for p in self.providers]
        if self.providers and "provider" not in self.initial:
            self.initial["provider"] = self.providers[0].name
        _money_widget_attrs(self.fields["amount"])
        low, high = checkouts.limits()
        self.fields["amount"].widget.attrs.update({"min": str(low), "max": str(high)})

    def clean_amount(self) -> Decimal:
        amount = _check_precision(self.cleaned_data["amount"])
        try:
            return checkouts.check_top_up_amount(amount)
        except BillingError as exc:
            raise ValidationError(exc.message) from exc


class BillingDetailsForm(forms.Form):
    """Who the customer's invoices are made out to (billing.buyer): a company's name and NPWP, or an
    individual's NIK, and the billing address. All optional."""

    company_name = forms.CharField(
        label=_("Company name"),
        max_length=200,
        required=False,
        help_text=_("Leave blank to have invoices made out to your name."),
    )
    tax_id_kind = forms.ChoiceField(
        label=_("Tax ID type"),
        required=False,
        choices=[("", _("None")), ("npwp", _("NPWP")), ("nik", _("NIK"))],
    )
    tax_id = forms.CharField(
        label=_("Tax ID"),
        max_length=32,
        required=False,
        help_text=_("An NPWP has 15 or 16 digits, a NIK 16; dots and dashes are allowed."),
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )
    billing_address = forms.CharField(
        label=_("Billing address"),
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def clean_company_name(self) -> str:
        return self.cleaned_data["company_name"].strip()

    def clean_billing_address(self) -> str:
        lines = [
            line.rstrip() for line in self.cleaned_data["billing_address"].replace("\r\n", "\n").split("\n")
        ]
        address = "\n".join(lines).strip()
        if address.count("\n") >= ADDRESS_LINES:
            raise ValidationError(
                _("Give the address in at most %(count)d lines.") % {"count": ADDRESS_LINES}
            )
        return address

    def clean(self):
        cleaned = super().clean()
        if "tax_id" in cleaned and "tax_id_kind" in cleaned:
            try:
                cleaned["tax_id"] = buyer.clean_tax_id(cleaned["tax_id_kind"], cleaned["tax_id"])
            except BillingError as exc:
                self.add_error("tax_id", exc.message)
        return cleaned


class BankTransferLookupForm(forms.Form):
    """Staff look up the open invoices a bank statement's amount pays (billing.transfer)."""

    amount = _money_field(
        _("Amount on the bank statement"),
        min_value=Decimal("0.01"),
        help_text=_("The amount exactly as it arrived, unique code included."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _money_widget_attrs(self.fields["amount"])

    def clean_amount(self) -> Decimal:
        return _check_precision(self.cleaned_data["amount"])


class RecordPaymentForm(forms.Form):
    """Staff record money received (a bank transfer, cash); idempotent on the reference."""

    METHODS = [
        ("bank_transfer", _("Bank transfer")),
        ("cash", _("Cash")),
        ("other", _("Other")),
    ]

    amount = _money_field(_("Amount"), min_value=Decimal("0.01"))
    reference = forms.CharField(
        label=_("Reference"),
        max_length=100,
        help_text=_("The bank transfer's reference or a receipt number. Recording it twice adds nothing."),
    )
    method = forms.ChoiceField(label=_("Method"), choices=METHODS, initial="bank_transfer")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _money_widget_attrs(self.fields["amount"])

    def clean_amount(self) -> Decimal:
        return _check_precision(self.cleaned_data["amount"])

    def clean_reference(self) -> str:
        return self.cleaned_data["reference"].strip()


class AdjustmentForm(forms.Form):
    """A manual correction of a customer's balance: positive credits, negative charges."""

    amount = _money_field(
        _("Amount"), help_text=_("Positive adds credit; negative (e.g. -50000) charges the customer.")
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=255,
        help_text=_("The customer sees it on their billing page; the ledger also records your name."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _money_widget_attrs(self.fields["amount"])

    def clean_amount(self) -> Decimal:
        amount = _check_precision(self.cleaned_data["amount"])
        if amount == 0:
            raise ValidationError(_("An adjustment of zero changes nothing."))
        return amount

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError(_("Say why the balance is adjusted."))
        return reason


class BillingTermsForm(forms.Form):
    """A customer's discount, and an optional custom monthly price per plan on sale."""

    discount_percent = forms.DecimalField(
        label=_("Discount (%)"),
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        max_digits=5,
        decimal_places=2,
        help_text=_("Off the list price of every plan without a custom price."),
    )

    PRICE_PREFIX = "price_"

    def __init__(self, *args, plans, custom_prices: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.plans = list(plans)
        custom_prices = custom_prices or {}
        for plan in self.plans:
            name = self.PRICE_PREFIX + plan.slug
            self.fields[name] = _money_field(plan.name, min_value=Decimal("0"), required=False)
            self.fields[name].widget.attrs["placeholder"] = _("List price")
            _money_widget_attrs(self.fields[name])
            self.fields[name].plan = plan
            if plan.slug in custom_prices:
                self.initial.setdefault(name, Decimal(str(custom_prices[plan.slug])))

    def price_fields(self):
        return [self[self.PRICE_PREFIX + plan.slug] for plan in self.plans]

    def clean(self):
        cleaned = super().clean()
        for plan in self.plans:
            name = self.PRICE_PREFIX + plan.slug
            if cleaned.get(name) is not None:
                try:
                    cleaned[name] = _check_precision(cleaned[name])
                except ValidationError as exc:
                    self.add_error(name, exc)
        return cleaned

    def custom_prices(self, previous: dict | None = None) -> dict[str, str]:
        """The custom prices to keep: those given here, plus any for plans no longer on sale."""
        on_sale = {plan.slug for plan in self.plans}
        prices = {slug: price for slug, price in (previous or {}).items() if slug not in on_sale}
        for plan in self.plans:
            value = self.cleaned_data.get(self.PRICE_PREFIX + plan.slug)
            if value is not None:
                prices[plan.slug] = str(quantize(value))
        return prices


ACCOUNT_NUMBER = re.compile(r"[0-9]+(?:[ -]?[0-9]+)*")
TAX_ID = re.compile(r"[0-9A-Za-z]+(?:[ ./-]?[0-9A-Za-z]+)*")
PHONE = re.compile(r"\+?[0-9 ()-]+")
ADDRESS_LINES = 6


class SellerProfileForm(forms.ModelForm):
    """The seller named on invoices and the bank account customers pay to (admins, billing settings page).
    Every field may stay blank; the bank, account number and holder are given together or not at all."""

    # The profile's version when the form was drawn (billing.seller.version_of): a save over another
    # admin's newer change is refused.
    version = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = SellerProfile
        fields = [*seller.FIELDS, *seller.FLAGS]
        widgets = {
            "address": forms.Textarea(attrs={"rows": 3}),
            "payment_note": forms.Textarea(attrs={"rows": 3}),
            "account_number": forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
            "phone": forms.TextInput(attrs={"type": "tel"}),
        }
        help_texts = {
            "legal_name": _(
                "As registered, e.g. PT Contoh Hosting Indonesia. Printed at the top of invoices."
            ),
            "address": _("Printed under the name on invoices, line by line."),
            "tax_id": _("The NPWP, e.g. 01.234.567.8-901.000. Left out of invoices when blank."),
            "email": _("Where customers write about payments."),
            "account_number": _("Digits, spaces and dashes only."),
            "account_holder": _("The name on the account, as the customer's bank shows it."),
            "payment_note": _(
                'Shown under the account, e.g. "Write the invoice number in the transfer note."'
            ),
            "unique_amount_codes": _(
                "Each new invoice gets a code of up to three digits added to its amount, so that the amount "
                "of a bank transfer points to one invoice (Staff › Match a bank transfer). The customer "
                "transfers the code too; it becomes credit on their account."
            ),
        }
        labels = {"unique_amount_codes": _("Add a unique code to each invoice's amount")}

    def _normalised_text(self, name: str) -> str:
        """A textarea's value with the browser's CRLF made LF and trailing spaces of each line dropped."""
        lines = [line.rstrip() for line in self.cleaned_data[name].replace("\r\n", "\n").split("\n")]
        return "\n".join(lines).strip()

    def clean_address(self) -> str:
        address = self._normalised_text("address")
        if address.count("\n") >= ADDRESS_LINES:
            raise ValidationError(
                _("Give the address in at most %(count)d lines.") % {"count": ADDRESS_LINES}
            )
        return address

    def clean_payment_note(self) -> str:
        return self._normalised_text("payment_note")

    def clean_tax_id(self) -> str:
        tax_id = self.cleaned_data["tax_id"]
        if tax_id and not TAX_ID.fullmatch(tax_id):
            raise ValidationError(_("Use only letters, digits, dots, dashes and slashes."))
        return tax_id

    def clean_phone(self) -> str:
        phone = self.cleaned_data["phone"]
        if phone and (not PHONE.fullmatch(phone) or not any(c.isdigit() for c in phone)):
            raise ValidationError(_("Use only digits, spaces, dashes, brackets and a leading +."))
        return phone

    def clean_account_number(self) -> str:
        number = self.cleaned_data["account_number"]
        if number and not ACCOUNT_NUMBER.fullmatch(number):
            raise ValidationError(_("Use only digits, spaces and dashes."))
        return number

    def clean(self):
        cleaned = super().clean()
        bank = ("bank_name", "account_number", "account_holder")
        given = [name for name in bank if cleaned.get(name)]
        if given and len(given) < len(bank):
            for name in bank:
                if name not in given and name not in self.errors:
                    self.add_error(
                        name,
                        _("Give the bank, the account number and the account holder together."),
                    )
        return cleaned


class AddonPricesForm(forms.Form):
    """The monthly price of each add-on kind (admins, billing settings page): 0 gives it away free. Backups
    are priced as a percent of the server's plan's monthly price instead (`backup_share`; empty or 0:
    free)."""

    # Kinds with a price of their own (backups have a share of the plan's price instead).
    PRICED = tuple(kind for kind in AddonKind.values if kind != AddonKind.BACKUP)
    SHARE_FIELD = "backup_share"
    LABELS = {
        AddonKind.IPV4: _("Additional IPv4 address, per month"),
        AddonKind.BACKUP: _("Backups: percent of the plan's monthly price"),
    }
    HELP = {
        AddonKind.IPV4: _(
            "Billed with the server's subscription: the rest of the month pro rata when it is added, then "
            "with each renewal; by the hour on servers billed by the hour."
        ),
        AddonKind.BACKUP: _(
            "Servers with backups turned on pay this share of their plan's monthly list price each month, "
            "billed with their subscription; empty or 0: backups are free."
        ),
    }

    def __init__(
        self,
        *args,
        prices: dict[str, Decimal] | None = None,
        share: Decimal | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        for kind in self.PRICED:
            field = _money_field(
                self.LABELS.get(kind, AddonKind(kind).label),
                min_value=Decimal("0"),
                help_text=self.HELP.get(kind, ""),
            )
            _money_widget_attrs(field)
            field.widget.attrs["min"] = "0"  # 0 is a price too: free
            self.fields[kind] = field
            if prices is not None and kind in prices:
                self.initial.setdefault(kind, prices[kind])
        field = forms.DecimalField(
            label=self.LABELS[AddonKind.BACKUP],
            min_value=Decimal("0"),
            max_value=Decimal("100"),
            max_digits=5,
            decimal_places=2,
            required=False,
            help_text=self.HELP[AddonKind.BACKUP],
        )
        field.widget.attrs.update({"step": "0.01", "min": "0", "max": "100", "inputmode": "decimal"})
        self.fields[self.SHARE_FIELD] = field
        if share is not None:  # 10.00 shows as 10
            self.initial.setdefault(
                self.SHARE_FIELD, share.quantize(Decimal(1)) if share == share.to_integral() else share
            )

    def price_fields(self) -> list:
        """The bound fields of the kinds with a price (the page shows them with the currency)."""
        return [self[kind] for kind in self.PRICED]

    def clean(self):
        cleaned = super().clean()
        for kind in self.PRICED:
            if cleaned.get(kind) is not None:
                try:
                    cleaned[kind] = _check_precision(cleaned[kind])
                except ValidationError as exc:
                    self.add_error(kind, exc)
        return cleaned

    def prices(self) -> dict[str, Decimal]:
        return {kind: quantize(self.cleaned_data[kind]) for kind in self.PRICED}

    def share(self) -> Decimal | None:
        """The backup share in percent (None: none set, backups are free)."""
        return self.cleaned_data.get(self.SHARE_FIELD)
