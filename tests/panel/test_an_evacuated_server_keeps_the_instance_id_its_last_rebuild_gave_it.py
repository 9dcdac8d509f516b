"""A rebuild gives the server's guest a new cloud-init instance id ("<id>-<rebuild>"), so that cloud-init
runs again; a seed written again for the same guest (an evacuation, a migration) must keep it, or cloud-init
runs again on the first boot after the move. `guest.instance_id` is that id: the latest successful
rebuild's, the server's id before any. On a simulated host."""

from __future__ import annotations

import pytest

from panel.models import Operation
from panel.servers import actions, guest
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_instance_id_is_the_latest_rebuilds_and_the_servers_id_before_any(customer, catalog):
    server = factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"], name="seed.example"
    )
    assert guest.instance_id(server) == str(server.id)

    rebuilds = []
    for _time in range(2):
        rebuild = actions.rebuild_server(server, catalog["image"], customer)
        assert factories.run_operation(rebuild).status == Operation.Status.SUCCEEDED
        rebuilds.append(rebuild)
        server.refresh_from_db()
        assert guest.instance_id(server) == f"{server.id}-{rebuild.id.hex[:8]}"
    assert rebuilds[0].id.hex[:8] != rebuilds[1].id.hex[:8]

    # The seed built with it says so (what an evacuation writes on the new host).
    meta = guest.guest_config(server, guest.instance_id(server)).meta_data()
    assert f"{server.id}-{rebuilds[1].id.hex[:8]}" in meta
