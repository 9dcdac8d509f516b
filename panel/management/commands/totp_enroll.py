from django.core.management.base import BaseCommand, CommandError

from panel.accounts import totp
from panel.models import User


class Command(BaseCommand):
    help = (
        "Enrol two-factor authentication (TOTP) for a user and print the base32 secret once, alone on "
        "stdout (for automation accounts and first admins). --reset removes the user's second factor and "
        "recovery codes."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument(
            "--reset", action="store_true", help="Remove the second factor and the recovery codes instead."
        )

    def handle(self, *args, email, reset, **options):
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with the email {email}.")
        if reset:
            if totp.reset(user):
                self.stderr.write(f"Removed two-factor authentication from {user.email}.")
            else:
                self.stderr.write(f"{user.email} had no two-factor authentication; nothing to remove.")
            return
        try:
            device = totp.enrol_from_shell(user)
        except totp.TwoFactorError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(totp.secret(device))
        self.stderr.write(
            f"Enrolled two-factor authentication for {user.email}. Add the secret above to an "
            "authenticator app now: it is not shown again."
        )
