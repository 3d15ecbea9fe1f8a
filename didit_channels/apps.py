from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DiditChannelsConfig(AppConfig):
    name = "didit_channels"
    verbose_name = _("Didit verification")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .live import revocation  # noqa: F401  (connects the revocation receivers)
