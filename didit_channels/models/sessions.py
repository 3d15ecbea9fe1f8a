from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..fields import EncryptedJSONField
from ..statuses import FINAL_STATUSES, NOT_STARTED


class VerificationSession(models.Model):
    """One Didit verification session and its current state."""

    session_id = models.CharField(_("Didit session id"), max_length=128, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="didit_sessions",
        help_text=_("Resolved from vendor_data; empty when it could not be resolved."),
        db_index=False,  # (user, -updated_at) below serves every lookup by user
    )
    # No `choices=` enforcement: unknown statuses are stored as received.
    status = models.CharField(max_length=64, default=NOT_STARTED)
    workflow_id = models.CharField(max_length=128, blank=True)
    # Not indexed: nothing looks sessions up by it (the admin's search is a
    # substring match, which no b-tree serves).
    vendor_data = models.CharField(max_length=255, blank=True)
    url = models.URLField(_("hosted verification URL"), max_length=1024, blank=True)
    # The latest decision Didit sent or we fetched: personal data, encrypted.
    decision = EncryptedJSONField(null=True, blank=True, editable=False)
    decision_updated_at = models.DateTimeField(null=True, blank=True)
    # Timestamp of the newest webhook applied; an older one must not roll back.
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name = _("verification session")
        permissions = [
            ("view_all_sessions", _("Can watch every verification session live")),
            ("view_decision", _("Can read verification decisions (personal data)")),
        ]
        # Every webhook updates its session row, and an update that changes an
        # indexed column (updated_at always does) writes to every index: keep
        # only the ones a query uses. Plain Index entries rather than
        # db_index=True, which on PostgreSQL adds a second, LIKE-only index
        # for each text column (migration 0005).
        indexes = [
            models.Index(fields=["user", "-updated_at"]),
            models.Index(fields=["status"], name="didit_session_status_idx"),
            models.Index(fields=["workflow_id"], name="didit_session_workflow_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class StatusEvent(models.Model):
    """One applied status change: the append-only history of a session.

    The primary key is the live stream's cursor. Rows are inserted only by
    ``didit_channels.state``, which serialises the insert with the commit so
    ids become visible in increasing order (see ``state.record_event``).
    """

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(
        VerificationSession, on_delete=models.CASCADE, related_name="events"
    )
    # The owner when the change happened: decides which audience may see it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="didit_events",
        db_index=False,  # (user, id) below serves every lookup by user
    )
    status = models.CharField(max_length=64)
    previous_status = models.CharField(max_length=64, null=True, blank=True)
    webhook_type = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)
    # event_id, or a digest of (session, status, type, timestamp): applied once.
    dedupe_key = models.CharField(max_length=128, unique=True)
    source = models.CharField(max_length=32, default="webhook")
    delivery = models.ForeignKey(
        "didit_channels.WebhookDelivery",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
    )

    class Meta:
        ordering = ["id"]
        verbose_name = _("status event")
        indexes = [models.Index(fields=["user", "id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.session_id}: {self.previous_status} → {self.status}"
