from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HypervisorConfig(AppConfig):
    name = "hypervisor"
    verbose_name = _("Hypervisors")
