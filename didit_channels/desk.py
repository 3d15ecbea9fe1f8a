"""The operators' side: the live desk's figures and the two admin actions.

The figures (sessions by status, median time from start to decision) are
computed by the database, so they stay cheap with many sessions. The actions
re-send a session's latest status to the sockets, or re-fetch its decision
from Didit and apply it through ``state.apply_status_change`` like any change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, OuterRef, Subquery
from django.utils import timezone

from .live.groups import publish_status
from .live.messages import status_frame
from .models import StatusEvent, VerificationSession
from .state import Applied, StatusChange, apply_status_change, derive_dedupe_key
from .statuses import APPROVED, DECLINED, FINAL_STATUSES, KNOWN_STATUSES

# Statuses that are a verdict on the person. Expired or abandoned sessions are
# over, but nobody decided anything, so they do not count towards the median.
DECISION_STATUSES = (APPROVED, DECLINED)

# Feed entries the desk renders before the socket takes over.
RECENT_EVENTS = 25


def status_counts() -> list[dict[str, Any]]:
    """Sessions per current status: every known status (zeros included), then unknown ones.

    Unknown statuses (Didit may add some) are listed after the known ones,
    alphabetically, only when some session has them.
    """
    rows = VerificationSession.objects.order_by().values("status").annotate(count=Count("pk"))
    counts = {row["status"]: row["count"] for row in rows}
    ordered = list(KNOWN_STATUSES) + sorted(set(counts) - set(KNOWN_STATUSES))
    return [
        {"status": status, "count": counts.get(status, 0), "final": status in FINAL_STATUSES}
        for status in ordered
    ]


def decision_durations():
    """Per decided session, the time from its first event to its first decision, ascending.

    Both ends use the events' ``occurred_at`` (Didit's clock), so the figure is
    not skewed by when webhooks happened to arrive.
    """
    events = StatusEvent.objects.filter(session=OuterRef("pk")).order_by("occurred_at", "id")
    first_event = events.values("occurred_at")[:1]
    first_decision = events.filter(status__in=DECISION_STATUSES).values("occurred_at")[:1]
    return (
        VerificationSession.objects.annotate(
            started=Subquery(first_event), decided=Subquery(first_decision)
        )
        .filter(decided__isnull=False)
        .annotate(
            duration=ExpressionWrapper(F("decided") - F("started"), output_field=DurationField())
        )
        .order_by("duration")
        .values_list("duration", flat=True)
    )


def median_decision_time() -> tuple[timedelta | None, int]:
    """(median time from start to decision, number of decided sessions).

    Computed in the database on every backend: a count, then the one or two
    middle rows of the sorted durations (SQLite has no percentile function).
    """
    durations = decision_durations()
    decided = durations.count()
    if decided == 0:
        return None, 0
    middle = decided // 2
    if decided % 2:
        return durations[middle], decided
    low, high = list(durations[middle - 1 : middle + 1])
    return (low + high) / 2, decided


def desk_stats() -> dict[str, Any]:
    """The desk's figures as JSON-ready data (served by ``views.desk_stats``)."""
    # Cursor first: a push with a higher id is not yet in these figures.
    cursor = latest_event_id()
    counts = status_counts()
    median, decided = median_decision_time()
    return {
        "counts": counts,
        "total": sum(row["count"] for row in counts),
        "open": sum(row["count"] for row in counts if not row["final"]),
        "median_seconds": None if median is None else round(median.total_seconds(), 1),
        "decided": decided,
        "cursor": cursor,
    }


def recent_usernames(limit: int = 100) -> dict[str, str]:
    """{user pk: username} for the owners of the latest ``limit`` events.

    Status frames name users by primary key only; the desk shows names.
    """
    from django.contrib.auth import get_user_model

    pks = set(
        StatusEvent.objects.exclude(user=None)
        .order_by("-id")
        .values_list("user_id", flat=True)[:limit]
    )
    users = get_user_model()._default_manager.filter(pk__in=pks)
    return {str(user.pk): user.get_username() for user in users}


def latest_event_id(**filters: Any) -> int:
    """The highest history id (the live cursor) among events matching ``filters``; 0 if none."""
    return StatusEvent.objects.filter(**filters).aggregate(latest=Max("id"))["latest"] or 0


def resend_status(session: VerificationSession) -> bool:
    """Publish the session's latest status event again; False if it has none.

    Safe to repeat: clients ignore an id they have already seen, and a socket
    that missed the original push gets it now.
    """
    event = session.events.select_related("session").order_by("-id").first()
    if event is None:
        return False
    publish_status(status_frame(event), None)
    return True


def refetch_decision(session: VerificationSession, client) -> Applied:
    """Fetch the session's decision from Didit and apply it as an admin change.

    ``client`` is a ``DiditClient``; its ``DiditAPIError`` subclasses propagate.
    The fetched status is applied even if unchanged, so the refreshed decision
    is stored and the history records that an operator re-fetched it. Caveat:
    if the session's newest webhook carries a timestamp ahead of our clock,
    the re-fetch is older than it and is dropped as stale.
    """
    from .client import DiditInvalidResponse

    decision = client.get_decision(session.session_id)
    status = decision.get("status")
    if not isinstance(status, str) or not status.strip():
        raise DiditInvalidResponse("Didit's decision has no status.")
    now = timezone.now()
    change = StatusChange(
        session_id=session.session_id,
        status=status.strip()[:64],
        occurred_at=now,
        dedupe_key=derive_dedupe_key(
            None, session.session_id, status, "admin.refetch", now.isoformat()
        ),
        source="admin",
        decision=decision,
    )
    return apply_status_change(change)
