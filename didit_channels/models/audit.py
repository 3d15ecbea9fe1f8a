from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class DecisionAccess(models.Model):
    """Who read which decision, when, from where: append-only."""

    accessed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept even if the user or the session is later deleted.
    username = models.CharField(max_length=255)
    session = models.ForeignKey(
        "didit_channels.VerificationSession",
        null=True,
        on_delete=models.SET_NULL,
        related_name="decision_accesses",
    )
    session_ref = models.CharField(_("Didit session id"), max_length=128)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=32)

    class Meta:
        ordering = ["-accessed_at"]
        verbose_name = _("decision access")
        verbose_name_plural = _("decision accesses")

    def __str__(self) -> str:
        return f"{self.username} read {self.session_ref} via {self.via}"
