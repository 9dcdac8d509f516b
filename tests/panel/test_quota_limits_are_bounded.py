"""A quota larger than the column holds is bad input: 400 from the API, a form error on the staff page, and
nothing is saved."""

from __future__ import annotations

import pytest

from panel.accounts import quotas

pytestmark = pytest.mark.django_db
HUGE = 10**20


def test_the_api_answers_400(api, staff, customer):
    response = api(staff).put(
        f"/api/v1/admin/customers/{customer.pk}/quota/",
        {"servers": HUGE, "vcpus": None, "memory_mib": None, "disk_gib": None},
        format="json",
    )
    assert response.status_code == 400
    assert "servers" in response.json()["error"]["fields"]
    assert quotas.own_limits(customer)["servers"] != HUGE


def test_the_staff_page_shows_a_form_error(client, staff, customer):
    client.force_login(staff)
    response = client.post(f"/staff/customers/{customer.pk}/", {"servers": str(HUGE)})
    assert response.status_code == 200
    assert response.context["form"].errors["servers"]
    customer.refresh_from_db()
    assert quotas.own_limits(customer)["servers"] != HUGE
