from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ConnectionTicket(models.Model):
    """A one-time, short-lived WebSocket ticket. Only its SHA-256 is stored."""

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="didit_tickets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    # Set only when DIDIT_CHANNELS["TICKET_BIND_CLIENT_IP"] is on.
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    # SHA-256 of the Django login session the ticket was asked for from (never
    # the session key itself); empty for bearer-token clients. Logging out of
    # that session closes the sockets it opened (live/logout.py).
    login_hash = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        verbose_name = _("connection ticket")

    def __str__(self) -> str:
        return f"ticket for user {self.user_id}"
