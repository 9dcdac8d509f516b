from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from panel.models import ApiToken


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` with tokens from `manage.py api_token` or the account page."""

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
        user = ApiToken.authenticate(raw)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked token."))
        return user, raw

    def authenticate_header(self, request) -> str:
        return self.keyword
