"""The domain type comes from the host's capabilities: kvm where offered, qemu otherwise."""

from __future__ import annotations

import libvirt
import pytest

from hypervisor.xml.capabilities import Capabilities


def caps_xml(host_arch: str = "x86_64", guests: dict[str, list[str]] | None = None, extra: str = "") -> str:
    """A small capabilities document: `guests` maps an hvm guest arch to its domain types."""
    guests = {"x86_64": ["qemu", "kvm"]} if guests is None else guests
    guest_elements = "".join(
        f"<guest><os_type>hvm</os_type><arch name='{arch}'><wordsize>64</wordsize>"
        f"<emulator>/usr/bin/qemu-system-{arch}</emulator>"
        + "".join(f"<domain type='{kind}'/>" for kind in kinds)
        + "</arch></guest>"
        for arch, kinds in guests.items()
    )
    return (
        f"<capabilities><host><cpu><arch>{host_arch}</arch><model>Skylake-Client-IBRS</model></cpu></host>"
        f"{guest_elements}{extra}</capabilities>"
    )


def test_kvm_is_chosen_when_the_host_offers_kvm_and_qemu():
    caps = Capabilities.parse(caps_xml(guests={"x86_64": ["qemu", "kvm"]}))
    assert caps.domain_type() == "kvm"
    assert caps.has_kvm
    assert caps.guest_arch() == "x86_64"
    assert caps.cpu_model == "Skylake-Client-IBRS"


def test_qemu_is_chosen_when_the_host_offers_only_qemu():
    caps = Capabilities.parse(caps_xml(guests={"x86_64": ["qemu"]}))
    assert caps.domain_type() == "qemu"
    assert not caps.has_kvm


def test_forced_emulation_chooses_qemu_even_where_kvm_exists():
    caps = Capabilities.parse(caps_xml(guests={"x86_64": ["qemu", "kvm"]}))
    assert caps.domain_type(force_emulation=True) == "qemu"
    assert caps.has_kvm


def test_kvm_for_another_guest_arch_does_not_count():
    """KVM offered for i686 guests only says nothing about x86_64 guests on an x86_64 host."""
    caps = Capabilities.parse(caps_xml(guests={"i686": ["qemu", "kvm"], "x86_64": ["qemu"]}))
    assert caps.guest_arch() == "x86_64"
    assert caps.domain_type() == "qemu"


def test_non_hvm_guests_are_ignored():
    xen_guest = "<guest><os_type>xen</os_type><arch name='x86_64'><domain type='xen'/></arch></guest>"
    caps = Capabilities.parse(caps_xml(guests={"x86_64": ["qemu"]}, extra=xen_guest))
    assert caps.domain_types == {"x86_64": ["qemu"]}
    assert caps.domain_type() == "qemu"


def test_a_host_without_hvm_guests_offers_no_domain_type():
    caps = Capabilities.parse(caps_xml(guests={}))
    assert caps.domain_type() is None
    assert caps.domain_type(force_emulation=True) is None


@pytest.mark.parametrize("force_emulation", [False, True])
def test_the_test_drivers_real_capabilities_give_the_test_type(force_emulation):
    conn = libvirt.open("test:///default")
    try:
        caps = Capabilities.parse(conn.getCapabilities())
    finally:
        conn.close()
    assert caps.domain_type(force_emulation=force_emulation) == "test"
    assert not caps.has_kvm
    assert caps.guest_arch() == caps.host_arch != ""
