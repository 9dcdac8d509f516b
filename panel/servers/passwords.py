"""One-time root passwords for rescue mode and password resets: made when the action is requested, shown
to the customer once (the API's answer, the page after the request), kept only encrypted in the operation's
parameters (hypervisor.secrets) until the worker has used them, then removed with the operation's close."""

from __future__ import annotations

import secrets
import string

from django.utils.translation import gettext as _

from hypervisor import secrets as stored_secrets

MIN_LENGTH = 12
MAX_LENGTH = 128
GENERATED_LENGTH = 20
# Letters and digits without the ones that are easily mistaken for each other (0/O, 1/l/I): typed by hand on
# a console, and free of characters a shell or a keyboard layout treats specially.
ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
# The key of the encrypted password in Operation.params (removed when the operation closes).
PARAM = "password"


class InvalidPassword(ValueError):
    pass


def generate() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(GENERATED_LENGTH))


def check(password: str) -> str:
    """The password a customer chose, if it will do: 12 to 128 characters, none of them a control
    character (the guest agent hands it to chpasswd one line at a time). InvalidPassword otherwise."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidPassword(
            _("A root password has %(min)s to %(max)s characters.") % {"min": MIN_LENGTH, "max": MAX_LENGTH}
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise InvalidPassword(_("A root password cannot contain line breaks or other control characters."))
    return password


def sealed(password: str) -> dict[str, str]:
    """The parameter that carries the password to the worker, encrypted."""
    return {PARAM: stored_secrets.encrypt(password)}


def unsealed(params: dict) -> str:
    """The password an operation carries (for the worker)."""
    return stored_secrets.decrypt(params.get(PARAM) or "")


def without_secret(params: dict) -> dict | None:
    """The parameters without the password, or None when they carry none."""
    if PARAM not in (params or {}):
        return None
    return {key: value for key, value in params.items() if key != PARAM}


# The page after a browser request shows the password once: kept encrypted in the session for that one page
# (without JavaScript the request is answered with a redirect), and taken out when it is shown.
SESSION_KEY = "one_time_password"


def keep_for_next_page(request, server_id, action: str, password: str) -> None:
    request.session[SESSION_KEY] = {
        "server": str(server_id),
        "action": action,
        "sealed": stored_secrets.encrypt(password),
    }


def take_for_page(request, server_id) -> dict | None:
    """{"action", "password"} kept for this server's page, taken out of the session; None when none."""
    kept = request.session.get(SESSION_KEY)
    if not kept or kept.get("server") != str(server_id):
        return None
    del request.session[SESSION_KEY]
    try:
        return {"action": kept["action"], "password": stored_secrets.decrypt(kept["sealed"])}
    except stored_secrets.SecretUnreadable:
        return None
