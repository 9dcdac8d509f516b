"""What billing tells the rest of the panel. Billing knows servers only as subscription references; the
panel listens and acts on the servers (design.md: billing never imports the panel)."""

from django.dispatch import Signal

# account, references: the account is overdue past its grace period; stop these subscriptions' servers.
account_suspended = Signal()
# account, references: the account is settled again; start the servers billing suspended.
account_unsuspended = Signal()
# account, references: overdue past the termination period; delete these servers.
subscriptions_terminated = Signal()
