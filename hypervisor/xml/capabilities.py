"""Reading a host's capabilities XML."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree


@dataclass
class Capabilities:
    host_arch: str
    cpu_model: str
    domain_types: dict[str, list[str]] = field(default_factory=dict)  # guest arch -> hvm domain types

    @classmethod
    def parse(cls, xml: str) -> Capabilities:
        root = etree.fromstring(xml.encode())
        host_arch = root.findtext("host/cpu/arch") or ""
        cpu_model = root.findtext("host/cpu/model") or ""
        types: dict[str, list[str]] = {}
        for guest in root.findall("guest"):
            if guest.findtext("os_type") != "hvm":
                continue
            arch = guest.find("arch")
            if arch is None:
                continue
            names = [domain.get("type") for domain in arch.findall("domain") if domain.get("type")]
            types.setdefault(arch.get("name"), []).extend(names)
        return cls(host_arch=host_arch, cpu_model=cpu_model, domain_types=types)

    def guest_arch(self) -> str:
        """The architecture to run guests as: the host's own, else x86_64 when offered."""
        if self.host_arch in self.domain_types:
            return self.host_arch
        if "x86_64" in self.domain_types:
            return "x86_64"
        return next(iter(self.domain_types), self.host_arch)

    def domain_type(self, force_emulation: bool = False) -> str | None:
        """kvm where the host offers it (unless emulation is forced), qemu otherwise, else what exists."""
        offered = self.domain_types.get(self.guest_arch(), [])
        preference = ["qemu"] if force_emulation else ["kvm", "qemu"]
        for kind in preference:
            if kind in offered:
                return kind
        return offered[0] if offered else None

    @property
    def has_kvm(self) -> bool:
        return "kvm" in self.domain_types.get(self.guest_arch(), [])
