from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.permissions import SAFE_METHODS

from panel.accounts import api_tokens, languages


class ReadOnlyToken(exceptions.PermissionDenied):
    default_detail = _("This token is read-only: it may only read (GET and HEAD).")
    default_code = "read_only_token"


class TotpRequired(exceptions.PermissionDenied):
    default_detail = _(
        "Staff and admin tokens work only after two-factor authentication is set up: log in to the panel "
        "and set it up on the account page (or ask an operator to run `manage.py totp_enroll`)."
    )
    default_code = "totp_required"


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` with tokens from `manage.py api_token` or the account page.

    An unknown, revoked or expired token gets 401; a read-scoped token gets 403 `read_only_token` on every
    method but GET, HEAD and OPTIONS, on every API path (also views with their own permission classes).
    `request.auth` is the `ApiToken`. The answer is in the token owner's language (`User.language`)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Invalid Authorization header: use 'Bearer <token>'."))
        try:
            raw = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        token = api_tokens.active_token(raw)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid, expired or revoked token."))
        if token.scope != token.Scope.WRITE and request.method not in SAFE_METHODS:
            raise ReadOnlyToken()
        if token.user.is_panel_staff and not token.user.totp_enabled:
            raise TotpRequired()
        languages.activate_for(request, token.user)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword
