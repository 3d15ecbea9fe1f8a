from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DiditChannelsConfig(AppConfig):
    name = "didit_channels"
    verbose_name = _("Didit verification")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        # Connect the receivers: revocation (4003 on lost access), logout
        # (a login's sockets close when it logs out) and password changes (the
        # user's sockets reconnect with tickets their credentials must earn).
        from .live import credentials, logout, revocation  # noqa: F401
