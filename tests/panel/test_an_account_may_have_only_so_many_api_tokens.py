"""An account has at most API_TOKEN_LIMIT working (unexpired) tokens: one more is a 422 in the API and a
form error on the account page, and nothing is created."""

from datetime import timedelta

import pytest
from django.utils import timezone

from panel.accounts import api_tokens
from panel.models import ApiToken

pytestmark = pytest.mark.django_db


def test_the_api_refuses_one_token_more(api, customer, settings):
    settings.API_TOKEN_LIMIT = 3
    client = api(customer)  # the first token
    for number in range(2):
        assert client.post("/api/v1/tokens/", {"name": f"t{number}"}, format="json").status_code == 201
    response = client.post("/api/v1/tokens/", {"name": "one more"}, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "too_many_tokens"
    assert "3 API tokens" in error["message"]
    assert ApiToken.objects.filter(user=customer).count() == 3
    # revoking one makes room
    token_id = ApiToken.objects.filter(user=customer, name="t0").get().pk
    assert client.delete(f"/api/v1/tokens/{token_id}/").status_code == 204
    assert client.post("/api/v1/tokens/", {"name": "now"}, format="json").status_code == 201


def test_expired_tokens_do_not_count(customer, settings):
    settings.API_TOKEN_LIMIT = 1
    token, _raw = api_tokens.issue(customer, name="old")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(days=1))
    api_tokens.issue(customer, name="new")
    with pytest.raises(api_tokens.TooManyTokens):
        api_tokens.issue(customer, name="third")


def test_the_account_page_says_so(client, customer, settings):
    settings.API_TOKEN_LIMIT = 1
    api_tokens.issue(customer, name="first")
    client.force_login(customer)
    response = client.post("/account/", {"name": "second", "scope": "write", "expires": ""})
    assert response.status_code == 200
    assert "You have 1 API token already" in response.content.decode()
    assert ApiToken.objects.filter(user=customer).count() == 1
