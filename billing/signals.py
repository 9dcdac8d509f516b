"""What billing tells the rest of the panel. Billing knows servers only as subscription references; the
panel listens and acts on the servers (docs/architecture.md: billing imports none of the panel's models or
services)."""

from django.dispatch import Signal

# account, references: the account is overdue past its grace period; stop these subscriptions' servers.
account_suspended = Signal()
# account, references: the account is settled again; start the servers billing suspended.
account_unsuspended = Signal()
# account, references: overdue past the termination period; delete these servers.
subscriptions_terminated = Signal()

# Sent inside the transaction that makes the change (receivers that write, write in it too), so that what
# they record is committed, or rolled back, with the change itself.
# account, payment, by (the staff member who recorded it, or None for a provider's confirmed payment).
payment_recorded = Signal()
# account, entry, by: staff adjusted the balance.
balance_adjusted = Signal()
# account, profile, by: staff set the account's discount or custom prices.
billing_terms_changed = Signal()
# account, invoice, by: an invoice was voided (by staff, or by the panel when by is None).
invoice_voided = Signal()
# profile, changed (the names of the fields that changed), by: an admin changed the seller's profile (the
# name on invoices, the bank account customers pay to).
seller_profile_changed = Signal()
# account, slip, by: staff recorded a withholding slip (PPh 23) against an invoice.
withholding_recorded = Signal()
# account, note, by: staff issued a credit note for (part of) a paid invoice.
credit_note_issued = Signal()
# account, checkout, reason: a provider reported a payment billing could not credit as it is (another
# amount or currency, a transaction id that is another customer's payment); in the checkout's transaction.
checkout_refused = Signal()
# kind, price, previous (0 when it had none: free), by: an admin set the monthly price of an add-on kind
# (billing.addons.set_addon_price).
addon_price_changed = Signal()
