"""The API's request rate per user (DRF throttling, counted in the shared cache by
`panel.accounts.throttling`)."""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from panel.accounts import throttling
from panel.activity.log import client_ip


class TokenRateThrottle(BaseThrottle):
    """At most `API_RATE` requests per user in a fixed window, all their tokens (and sessions) together,
    so that more tokens give no more requests; per client address (an IPv6 /64) for requests without a
    user. Over it, 429 with Retry-After and `code: "throttled"`."""

    def __init__(self):
        self._wait: int | None = None

    def allow_request(self, request, view) -> bool:
        user = request.user
        if user is not None and user.is_authenticated:
            key = f"user:{user.pk}"
        else:
            key = f"ip:{throttling.address_key(client_ip(request))}"
        self._wait = throttling.hit("api", key, settings.API_RATE)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
