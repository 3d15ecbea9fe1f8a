from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..fields import EncryptedBinaryField


class DeliveryOutcome(models.TextChoices):
    RECEIVED = "received", _("received, not yet judged")
    ACCEPTED = "accepted", _("accepted and applied")
    DUPLICATE = "duplicate", _("duplicate of an earlier delivery")
    STALE = "stale", _("older than the newest applied; recorded only")
    BAD_SIGNATURE = "bad_signature", _("signature or timestamp invalid")
    MALFORMED = "malformed", _("malformed body")
    TOO_LARGE = "too_large", _("body over the size limit")
    ERROR = "error", _("server error; retried by Didit or didit_reprocess")


class WebhookDelivery(models.Model):
    """Every request to the webhook as received: an append-only audit log.

    The row is written before the request is judged, so even a request that
    crashes the process leaves a trace; the outcome is filled in once.
    Signature header values are not kept (only whether they were present).
    """

    id = models.BigAutoField(primary_key=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    raw_body = EncryptedBinaryField(null=True, blank=True, editable=False)
    body_size = models.PositiveIntegerField(default=0)
    signature_valid = models.BooleanField(null=True)
    outcome = models.CharField(
        max_length=32,
        choices=DeliveryOutcome.choices,
        default=DeliveryOutcome.RECEIVED,
    )
    error = models.TextField(blank=True)
    # Copied out of the body (when it parsed) so the log can be searched.
    session_id = models.CharField(max_length=128, blank=True)
    event_id = models.CharField(max_length=128, blank=True)
    dedupe_key = models.CharField(max_length=128, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        # Equality lookups only (duplicate check, erasure, reprocessing, the
        # admin's filter): plain indexes, without the LIKE-only twin that
        # db_index=True adds on PostgreSQL to each text column.
        indexes = [
            models.Index(fields=["dedupe_key"], name="didit_delivery_dedupe_idx"),
            models.Index(fields=["session_id"], name="didit_delivery_session_idx"),
            models.Index(fields=["outcome"], name="didit_delivery_outcome_idx"),
        ]

    def __str__(self) -> str:
        return f"delivery #{self.pk} {self.outcome}"
