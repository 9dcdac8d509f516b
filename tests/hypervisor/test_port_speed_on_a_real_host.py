"""Port speed on a real libvirtd: applied to the running domain's interface, or, where the kernel lacks
the traffic-shaping modules (as on this machine), refused with a recorded reason while the server runs on
and keeps starting."""

import libvirt
import pytest
from lxml import etree

from hypervisor import shaping
from panel.models import Operation
from panel.servers import actions, operations
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
URI = "qemu:///system"


def test_the_port_speed_is_applied_or_the_refusal_recorded(customer):
    region = factories.make_region()
    factories.make_host(uri=URI, region=region, force_emulation=True)
    plan = factories.make_plan(slug="shaped", memory_mib=128, disk_gib=1, port_speed_mbps=50)
    server = actions.order_server(
        customer, name="shape1", plan=plan, image=factories.make_image(), region=region
    )
    conn = libvirt.open(URI)
    try:
        operations.execute(str(Operation.objects.get(server=server).pk))
        server.refresh_from_db()
        assert server.status == "running", server.status_reason
        domain = conn.lookupByUUIDString(str(server.id))
        if server.bandwidth_error:
            assert "port speed could not be applied" in server.bandwidth_error
        else:
            target = etree.fromstring(domain.XMLDesc().encode()).find("devices/interface/target").get("dev")
            live = domain.interfaceParameters(target, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            assert live["inbound.average"] == live["outbound.average"] == shaping.kib_per_second(50)
            saved = etree.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
            assert saved.find("devices/interface/bandwidth/inbound").get("average") == str(
                shaping.kib_per_second(50)
            )
    finally:
        delete = actions.delete_server(server, customer)
        operations.execute(str(delete.pk))
        conn.close()
