from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PanelConfig(AppConfig):
    name = "panel"
    verbose_name = _("Panel")

    def ready(self) -> None:
        from panel.activity import receivers  # noqa: F401  (connect their receivers)
        from panel.api import schema  # noqa: F401  (registers the API's authentication scheme)
        from panel.servers import billing_hooks  # noqa: F401
