"""Serializers of the sessions API.

Status metadata only: nothing here reads ``VerificationSession.decision``
(identity data), which is served by the audited decision endpoint alone.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import StatusEvent, VerificationSession

# Columns the list and detail read; ``decision`` (encrypted, large) is never loaded.
SESSION_FIELDS = (
    "id",
    "session_id",
    "status",
    "workflow_id",
    "url",
    "user",
    "created_at",
    "updated_at",
)


class StatusEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = StatusEvent
        fields = ["id", "status", "previous_status", "webhook_type", "occurred_at"]
        read_only_fields = fields


class SessionSerializer(serializers.ModelSerializer):
    """One session as its owner or an admin sees it in a list.

    ``url`` (the hosted verification page) is shown only to the session's
    owner: it lets whoever holds it continue that person's verification, so
    an admin browsing every session gets ``null``.
    """

    user = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = VerificationSession
        fields = [
            "session_id",
            "status",
            "url",
            "workflow_id",
            "user",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    # The owner's primary key (an integer for Django's default user model);
    # null while the session is unassigned.
    @extend_schema_field(
        {"oneOf": [{"type": "integer"}, {"type": "string"}], "nullable": True, "readOnly": True}
    )
    def get_user(self, session: VerificationSession) -> Any:
        return session.user_id

    def get_url(self, session: VerificationSession) -> str | None:
        request = self.context.get("request")
        viewer = getattr(getattr(request, "user", None), "pk", None)
        if viewer is None or session.user_id != viewer:
            return None
        return session.url or None


class SessionDetailSerializer(SessionSerializer):
    """A session with its status history, oldest first."""

    history = StatusEventSerializer(source="events", many=True, read_only=True)

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "history"]
        read_only_fields = fields
