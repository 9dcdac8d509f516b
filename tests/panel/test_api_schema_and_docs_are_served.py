import pytest

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_lists_the_contract_paths(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    for path in [
        "/api/v1/servers/",
        "/api/v1/servers/{id}/actions/",
        "/api/v1/plans/",
        "/api/v1/admin/hosts/",
        "/api/v1/account/",
        "/api/v1/ssh-keys/",
    ]:
        assert path in schema["paths"], path


def test_the_docs_page_is_served_without_a_cdn(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert "cdn" not in html.lower()
