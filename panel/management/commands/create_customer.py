import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import IntegrityError

from panel.models import User


class Command(BaseCommand):
    help = "Create a user: a customer, or staff (--staff) or an admin (--admin)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument(
            "--password", help="The password; a random one is generated and printed if omitted."
        )
        role = parser.add_mutually_exclusive_group()
        role.add_argument("--staff", action="store_true", help="Create a staff user.")
        role.add_argument("--admin", action="store_true", help="Create an admin.")
        parser.add_argument(
            "--language",
            choices=[code for code, _name in settings.LANGUAGES],
            default="",
            help="The language of the account's pages and mails (default: the language of the browser it "
            "first logs in with; until then its mails are in the installation's default language).",
        )

    def handle(self, *args, email, password, staff, admin, language, **options):
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"{email!r} is not a valid email address.") from exc
        role = User.Role.ADMIN if admin else User.Role.STAFF if staff else User.Role.CUSTOMER
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        if User.objects.filter(email__iexact=email).exists():
            raise CommandError(f"A user with the email {email} exists already.")
        try:
            user = User.objects.create_user(email, password, role=role, language=language)
        except IntegrityError as exc:
            raise CommandError(f"Could not create {email}: {exc}") from exc
        self.stdout.write(f"Created {user.get_role_display().lower()} {user.email}")
        if generated:
            self.stdout.write(f"Password: {password}")
