"""OpenAPI schema additions: the bearer-token scheme, so that the schema (and `check --deploy`, which builds
it) knows how the API authenticates. Registered by importing this module (panel/apps.py)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "panel.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <token>` with a token from the account page or `tokens/`.",
        }
