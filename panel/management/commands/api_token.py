from django.core.management.base import BaseCommand, CommandError

from panel.models import ApiToken, User


class Command(BaseCommand):
    help = "Print a new API token for the user with this email."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="cli", help="A name to recognise the token by.")

    def handle(self, *args, email, name, **options):
        user = User.objects.filter(email__iexact=email, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user with the email {email}.")
        _token, raw = ApiToken.issue(user, name)
        self.stdout.write(raw)
