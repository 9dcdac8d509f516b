"""The API rate is per user: more tokens give no more requests."""

import pytest
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db


def test_two_tokens_of_one_user_share_the_rate(customer, settings):
    settings.API_RATE = "4/min"
    clients = []
    for _ in range(2):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(customer)}")
        clients.append(client)
    for number in range(4):
        assert clients[number % 2].get("/api/v1/account/").status_code == 200
    for client in clients:
        response = client.get("/api/v1/account/")
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "throttled"
