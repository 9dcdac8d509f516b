"""The host list shows 50 hosts a page by name, searches names and URIs, filters by region and state, and
keeps the filters on its page links; the host page lists its servers 50 a page."""

from __future__ import annotations

import pytest

from hypervisor.models import Host, Region

pytestmark = pytest.mark.django_db


def _hosts(region: Region, count: int, prefix: str, state: str = Host.State.READY) -> list[Host]:
    return Host.objects.bulk_create(
        Host(name=f"{prefix}-{n:03d}", uri=f"test:///{prefix}/{n}", region=region, state=state)
        for n in range(count)
    )


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_hosts_are_shown_50_a_page_by_name(admin_client, catalog):
    _hosts(catalog["region"], 60, "rack")
    first = admin_client.get("/staff/hosts/").content.decode()
    assert "rack-000" in first and "rack-048" in first
    assert "rack-050" not in first and 'rel="next"' in first
    second = admin_client.get("/staff/hosts/?page=2").content.decode()
    assert "rack-050" in second and "rack-059" in second and "rack-000" not in second


def test_a_search_matches_names_and_uris_and_the_page_links_keep_it(admin_client, catalog):
    _hosts(catalog["region"], 60, "rack")
    _hosts(catalog["region"], 3, "edge")
    page = admin_client.get("/staff/hosts/?q=edge-00").content.decode()
    assert "edge-000" in page and "edge-002" in page and "rack-001" not in page
    assert "edge-001" in admin_client.get("/staff/hosts/?q=test:///edge/1").content.decode()
    paged = admin_client.get("/staff/hosts/?q=rack").content.decode()
    assert 'href="?q=rack&amp;page=2"' in paged


def test_the_region_and_state_filters_narrow_the_list(admin_client, catalog):
    other = Region.objects.create(slug="far-away", name="Far away")
    _hosts(catalog["region"], 2, "near")
    _hosts(other, 2, "far")
    _hosts(other, 1, "broken", state=Host.State.ERROR)
    by_region = admin_client.get("/staff/hosts/?region=far-away").content.decode()
    assert "far-000" in by_region and "broken-000" in by_region and "near-000" not in by_region
    by_state = admin_client.get("/staff/hosts/?region=far-away&state=error").content.decode()
    assert "broken-000" in by_state and "far-000" not in by_state
    nothing = admin_client.get("/staff/hosts/?q=no-such-host").content.decode()
    assert "No hosts match." in nothing
