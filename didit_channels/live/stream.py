"""The database side of a socket's stream: the snapshot and history reads.

Visibility: a status event belongs to the user who owned its session when it
happened (``StatusEvent.user``). A user's socket sees those events; a socket
in the admin audience sees every event. When a session is reassigned, its
past events stay with the former owner (who may still resume them) and its
new owner hears of it from the first change after the reassignment; the
snapshot always lists a session under its current owner.

Ids become visible in commit order (``state.record_event``), so "every event
with ``after < id <= upto``" read once ``upto`` is visible is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Max, QuerySet

from ..conf import didit_settings
from ..models import StatusEvent, VerificationSession
from .access import Access, read_access_with
from .messages import snapshot_entry, status_frame

# History is sent in batches of this many rows, each one query.
BATCH_SIZE = 500

_EVENT_FIELDS = (
    "id",
    "status",
    "previous_status",
    "webhook_type",
    "occurred_at",
    "user_id",
    "session__session_id",
)


@dataclass
class Opening:
    """What a socket needs right after accept: fresh access, cursor and snapshot."""

    access: Access | None
    cursor: int
    sessions: list[dict[str, Any]]


def latest_event_id() -> int:
    return StatusEvent.objects.aggregate(latest=Max("id"))["latest"] or 0


def visible_events(user_pk: Any, admin: bool) -> QuerySet[StatusEvent]:
    events = StatusEvent.objects.all()
    if not admin:
        events = events.filter(user_id=user_pk)
    # The session's decision is encrypted personal data: never loaded here.
    return events.select_related("session").only(*_EVENT_FIELDS).order_by("id")


def _newest_event_sql() -> str:
    qn = connection.ops.quote_name
    meta = StatusEvent._meta
    # Identifiers from the model's _meta, quoted; no values.
    return f"(SELECT MAX({qn(meta.pk.column)}) FROM {qn(meta.db_table)})"  # noqa: S608


def open_stream(user_pk: Any, admin: bool) -> Opening:
    """Re-read access and the cursor (one statement), then the snapshot, in that order.

    Access is re-read because a revocation committed between the ticket's
    consumption and the socket joining its groups would otherwise go unheard.
    The cursor is read before the sessions so the snapshot reflects at least
    everything up to it; a change that lands in between is also sent live,
    which is harmless.
    """
    access, newest = read_access_with(user_pk, _newest_event_sql())
    if access is None:
        return Opening(None, 0, [])
    sessions = VerificationSession.objects.values_list("session_id", "status", "updated_at")
    if admin:
        sessions = sessions.order_by("-updated_at")[: didit_settings.ADMIN_SNAPSHOT_LIMIT]
    else:
        sessions = sessions.filter(user_id=user_pk).order_by("-updated_at")
    return Opening(access, newest or 0, [snapshot_entry(*row) for row in sessions])


def history_batch(user_pk: Any, admin: bool, after: int, upto: int) -> list[dict[str, Any]]:
    """Up to ``BATCH_SIZE`` status frames this socket may see with ``after < id <= upto``,
    oldest first. Fewer than ``BATCH_SIZE`` means there are no more."""
    events = visible_events(user_pk, admin).filter(id__gt=after, id__lte=upto)
    return [status_frame(event) for event in events[:BATCH_SIZE]]
