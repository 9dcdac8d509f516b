"""panel.infrastructure.pools is the one way IP pools are created and changed: the API, the IP pools pages and
`manage.py add_ip_pool` each leave exactly one audit-log line of the same shape for a pool they create; a
change records only what really changed, with the values as stored and the pool's name before the change,
and a change that changes nothing records nothing; two admins changing one pool at the same moment each
get a line describing their own change."""

from __future__ import annotations

import threading
import time
import uuid
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction

from hypervisor import ipam
from hypervisor.models import IPPool
from panel.infrastructure import pools
from panel.models import ActivityEvent
from tests import factories

POOLS = "/api/v1/admin/ip-pools/"
CREATED = "IP pool %(name)s created (%(cidr)s, region %(region)s)."
CHANGED = "IP pool %(name)s changed: %(changes)s."


def pool_events():
    return ActivityEvent.objects.filter(type=ActivityEvent.Type.IP_POOL_CHANGED).order_by("at", "pk")


@pytest.fixture
def region(db):
    return factories.make_region()


def test_the_api_the_page_and_the_command_each_leave_one_line_of_the_same_shape(
    client, api, admin_user, region
):
    answer = api(admin_user).post(
        POOLS,
        {"region": "jakarta", "name": "by-api", "cidr": "192.0.2.0/28", "gateway": "192.0.2.1"},
        format="json",
    )
    assert answer.status_code == 201, answer.json()

    client.force_login(admin_user)
    page = client.post(
        "/staff/ip-pools/",
        {
            "region": region.pk,
            "name": "by-page",
            "cidr": "198.51.100.0/28",
            "gateway": "198.51.100.1",
            "assignment": "",
            "nameservers": "",
            "excluded": "",
        },
    )
    assert page.status_code == 302

    call_command(
        "add_ip_pool", "jakarta", "2001:db8:100::/62", "fe80::1", "--name", "by-command", stdout=StringIO()
    )

    made = {pool.name: pool for pool in IPPool.objects.all()}
    lines = [
        (event.summary, event.data, event.target, event.staff_action, event.actor) for event in pool_events()
    ]
    assert lines == [
        (
            CREATED,
            {"name": "by-api", "cidr": "192.0.2.0/28", "region": "Jakarta"},
            f"ip_pool:{made['by-api'].pk}",
            True,
            admin_user,
        ),
        (
            CREATED,
            {"name": "by-page", "cidr": "198.51.100.0/28", "region": "Jakarta"},
            f"ip_pool:{made['by-page'].pk}",
            True,
            admin_user,
        ),
        (
            CREATED,
            {"name": "by-command", "cidr": "2001:db8:100::/62", "region": "Jakarta"},
            f"ip_pool:{made['by-command'].pk}",
            True,
            None,  # an operator at the command line
        ),
    ]


def test_a_pool_that_cannot_be_created_leaves_no_line(admin_user, region):
    pools.create_pool(admin_user, region=region, name="first", cidr="192.0.2.0/28", gateway="192.0.2.1")
    with pytest.raises(ValidationError) as refused:
        pools.create_pool(admin_user, region=region, name="again", cidr="192.0.2.0/29", gateway="192.0.2.1")
    assert refused.value.code == "overlap"
    assert list(IPPool.objects.values_list("name", flat=True)) == ["first"]
    assert pool_events().count() == 1


def test_a_change_records_only_what_changed_as_stored_and_a_change_of_nothing_records_nothing(
    client, api, admin_user, region
):
    pool = pools.create_pool(admin_user, region=region, name="old", cidr="192.0.2.0/29", gateway="192.0.2.1")
    url = f"{POOLS}{pool.pk}/"

    # The API: the same values again change nothing, and nothing is recorded.
    same = api(admin_user).patch(url, {"name": "old", "nameservers": [], "is_active": True}, format="json")
    assert same.status_code == 200, same.json()
    assert pool_events().count() == 1

    # One real change among unchanged values: only it is recorded, as stored (the excluded entry without its
    # spaces), under the name the pool had.
    changed = api(admin_user).patch(
        url, {"name": "new", "nameservers": [], "excluded": [" 192.0.2.6 "], "is_active": True}, format="json"
    )
    assert changed.status_code == 200, changed.json()
    line = pool_events().last()
    assert (line.summary, line.data, line.actor) == (
        CHANGED,
        {"name": "old", "changes": "excluded=[192.0.2.6], name=new"},
        admin_user,
    )

    # The page: saving the form as it stands records nothing; taking the pool out of use records that.
    client.force_login(admin_user)
    form = {"name": "new", "nameservers": "", "excluded": "192.0.2.6", "is_active": "on"}
    assert client.post(f"/staff/ip-pools/{pool.pk}/", form).status_code == 302
    assert pool_events().count() == 2
    del form["is_active"]
    assert client.post(f"/staff/ip-pools/{pool.pk}/", form).status_code == 302
    line = pool_events().last()
    assert line.data == {"name": "new", "changes": "is_active=False"}
    assert IPPool.objects.get(pk=pool.pk).is_active is False


def test_a_refused_change_changes_nothing_and_records_nothing(admin_user, region):
    pool = pools.create_pool(admin_user, region=region, name="p", cidr="192.0.2.0/29", gateway="192.0.2.1")
    assert ipam.allocate(region, uuid.uuid4()).address == "192.0.2.2"
    with pytest.raises(ValidationError) as refused:
        pools.update_pool(pool, admin_user, name="renamed", excluded=["192.0.2.2"])
    assert refused.value.code == "excluded_in_use"
    assert pools.UPDATE_ERROR_FIELDS[refused.value.code] == "excluded"
    stored = IPPool.objects.get(pk=pool.pk)
    assert (stored.name, stored.excluded) == ("p", [])
    assert pool_events().count() == 1


def test_two_admins_changing_one_pool_at_once_each_get_a_line_of_their_own_change(
    transactional_db, admin_user
):
    region = factories.make_region()
    pool = pools.create_pool(admin_user, region=region, name="old", cidr="192.0.2.0/29", gateway="192.0.2.1")
    first_saved = threading.Event()

    def first_admin() -> None:
        # Renames the pool and holds the transaction open a moment, as a slow request would.
        try:
            with transaction.atomic():
                pools.update_pool(pool, admin_user, name="first")
                first_saved.set()
                time.sleep(1)
        finally:
            connection.close()

    thread = threading.Thread(target=first_admin)
    thread.start()
    try:
        assert first_saved.wait(10)
        # The second admin read the pool as "old" too; the service waits for the first change and describes
        # the pool as it then is.
        pools.update_pool(pool, admin_user, name="second")
    finally:
        thread.join(10)

    changes = [(event.data["name"], event.data["changes"]) for event in pool_events()[1:]]
    assert changes == [("old", "name=first"), ("first", "name=second")]
    assert IPPool.objects.get(pk=pool.pk).name == "second"
