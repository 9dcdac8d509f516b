"""tokens/: named tokens with scope read or write and an optional expiry, listed, revoked; a read token
may only read (on every path), expired and revoked tokens get 401."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from panel.models import ActivityEvent, ApiToken

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_token_is_created_shown_once_listed_and_revoked(api, customer):
    client = api(customer)
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = client.post(
        "/api/v1/tokens/", {"name": "ci", "scope": "read", "expires_at": expires.isoformat()}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "name", "scope", "created_at", "expires_at", "last_used_at", "token"}
    assert body["scope"] == "read" and body["name"] == "ci"
    raw = body["token"]
    assert raw.startswith(ApiToken.PREFIX)
    assert not ApiToken.objects.filter(key_hash=raw).exists()  # only its hash is stored

    assert bearer(raw).get("/api/v1/account/").status_code == 200
    listed = client.get("/api/v1/tokens/").json()
    assert listed["count"] == 2  # the fixture's token and the new one
    row = next(item for item in listed["results"] if item["id"] == body["id"])
    assert set(row) == {"id", "name", "scope", "created_at", "expires_at", "last_used_at"}
    assert row["last_used_at"] is not None

    assert client.delete(f"/api/v1/tokens/{body['id']}/").status_code == 204
    assert client.delete(f"/api/v1/tokens/{body['id']}/").status_code == 404
    response = bearer(raw).get("/api/v1/account/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    types = list(ActivityEvent.objects.filter(account=customer).values_list("type", flat=True))
    assert ActivityEvent.Type.TOKEN_CREATED in types and ActivityEvent.Type.TOKEN_REVOKED in types


def test_scope_defaults_to_write(api, customer):
    body = api(customer).post("/api/v1/tokens/", {"name": "laptop"}, format="json").json()
    assert body["scope"] == "write" and body["expires_at"] is None


def test_a_read_token_may_only_read(api, customer, catalog):
    raw = api(customer).post("/api/v1/tokens/", {"scope": "read"}, format="json").json()["token"]
    client = bearer(raw)
    assert client.get("/api/v1/servers/").status_code == 200
    assert client.head("/api/v1/servers/").status_code == 200
    for method, path, data in [
        ("post", "/api/v1/servers/", {"name": "web1", "plan": "small", "image": "debian-12"}),
        ("post", "/api/v1/ssh-keys/", {"name": "k", "public_key": "x"}),
        ("post", "/api/v1/tokens/", {"name": "escalate"}),
        ("delete", "/api/v1/tokens/1/", None),
    ]:
        response = getattr(client, method)(path, data, format="json")
        assert response.status_code == 403, (path, response.content)
        assert response.json()["error"]["code"] == "read_only_token"
    assert ApiToken.objects.filter(user=customer).count() == 2


def test_a_read_token_of_an_admin_cannot_change_hosts(api, admin_user, catalog):
    raw = api(admin_user).post("/api/v1/tokens/", {"scope": "read"}, format="json").json()["token"]
    host = catalog["host"]
    response = bearer(raw).patch(f"/api/v1/admin/hosts/{host.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "read_only_token"
    host.refresh_from_db()
    assert host.enabled
    assert bearer(raw).get(f"/api/v1/admin/hosts/{host.pk}/").status_code == 200


def test_an_expired_token_gets_401(api, customer):
    raw = (
        api(customer)
        .post(
            "/api/v1/tokens/",
            {"expires_at": (timezone.now() + timedelta(minutes=5)).isoformat()},
            format="json",
        )
        .json()["token"]
    )
    assert bearer(raw).get("/api/v1/account/").status_code == 200
    ApiToken.objects.filter(user=customer, expires_at__isnull=False).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = bearer(raw).get("/api/v1/account/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "body",
    [
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"expires_at": "next tuesday"},
        {"scope": "admin"},
        {"name": "x" * 101},
    ],
)
def test_bad_token_input_gets_400_and_creates_nothing(api, customer, body):
    client = api(customer)
    response = client.post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and set(error["fields"]) <= {"expires_at", "scope", "name"}
    assert ApiToken.objects.filter(user=customer).count() == 1


def test_customers_cannot_see_or_revoke_other_customers_tokens(api, customer, other_customer):
    theirs = api(other_customer).post("/api/v1/tokens/", {"name": "theirs"}, format="json").json()
    client = api(customer)
    names = [item["name"] for item in client.get("/api/v1/tokens/").json()["results"]]
    assert "theirs" not in names
    assert client.delete(f"/api/v1/tokens/{theirs['id']}/").status_code == 404
    assert ApiToken.objects.filter(pk=theirs["id"]).exists()
