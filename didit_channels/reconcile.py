"""Catch up on webhooks Didit never delivered.

``reconcile()`` asks Didit for the decision of every session that sits in a
non-final status and has not changed for ``RECONCILE_AFTER_SECONDS``, and
applies what it finds through ``state.apply_status_change`` exactly like a
webhook would: history row, ``session_status_changed`` signal, push to the
sockets. Run it from cron with ``manage.py didit_reconcile``.

Idempotent: a session whose status at Didit equals ours is left alone, and a
change carries a dedupe key derived from the fetched decision and the local
state it moves from, so two overlapping runs record one history row.

Caveats: a session that stays in a non-final status (say ``In Review`` for
days) is fetched again on every run; ``limit`` bounds one run's calls and the
client's retry/Retry-After handling respects Didit's rate limits. The fetched
decision (personal data) is stored in the encrypted ``decision`` field only.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .client import DiditAPIError, DiditClient, DiditNotConfigured
from .conf import didit_settings
from .models import VerificationSession
from .state import ApplyResult, StatusChange, apply_status_change
from .statuses import FINAL_STATUSES

logger = logging.getLogger("didit_channels.reconcile")

MAX_STATUS = VerificationSession._meta.get_field("status").max_length


class Outcome(enum.Enum):
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    # Another writer (a webhook, a parallel run) got there first.
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class ReconcileReport:
    checked: int = 0
    counts: dict[Outcome, int] = field(default_factory=lambda: {o: 0 for o in Outcome})
    failed_sessions: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return self.counts[outcome]

    def __str__(self) -> str:
        parts = ", ".join(f"{self.counts[o]} {o.value}" for o in Outcome)
        return f"checked {self.checked} session(s): {parts}"


def sessions_due(
    older_than: timedelta | None = None, *, now: datetime | None = None
) -> QuerySet[VerificationSession]:
    """Non-final sessions unchanged for ``older_than`` (default RECONCILE_AFTER_SECONDS).

    Oldest first, so a bounded run starts with the longest-silent sessions.
    """
    if older_than is None:
        older_than = timedelta(seconds=didit_settings.RECONCILE_AFTER_SECONDS)
    cutoff = (now or timezone.now()) - older_than
    return (
        VerificationSession.objects.exclude(status__in=FINAL_STATUSES)
        .filter(updated_at__lte=cutoff)
        .defer("decision")
        .order_by("updated_at", "id")
    )


def reconcile_dedupe_key(session: VerificationSession, status: str) -> str:
    """Identifies "this session moved from its current local state to ``status``".

    Built from the fetched status and the state it replaces (status and
    newest event time), so a re-run that read the same state dedupes, while
    a later genuine change (even back to an earlier status) gets a new key.
    """
    since = session.last_event_at.isoformat() if session.last_event_at else ""
    material = "\x1f".join((session.session_id, session.status, since, status))
    return "reconcile:" + hashlib.sha256(material.encode("utf-8")).hexdigest()


def _str_or_none(value: Any, limit: int = 255) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def reconcile_session(session: VerificationSession, client: DiditClient) -> Outcome:
    """Fetch one session's decision and apply it if its status differs from ours."""
    try:
        decision = client.get_decision(session.session_id)
    except DiditNotConfigured:
        raise
    except DiditAPIError as exc:
        logger.warning(
            "didit_reconcile: could not fetch session %s: %s (status %s, detail %r)",
            session.session_id,
            type(exc).__name__,
            exc.status_code,
            exc.detail,
        )
        return Outcome.FAILED

    status = _str_or_none(decision.get("status"), MAX_STATUS)
    if status is None:
        logger.warning(
            "didit_reconcile: Didit's decision for session %s has no usable status",
            session.session_id,
        )
        return Outcome.FAILED
    if status == session.status:
        return Outcome.UNCHANGED

    # Didit's answer is as of now; never earlier than the newest applied
    # event, or the change would be dropped as stale (clock skew with Didit).
    now = timezone.now()
    occurred_at = max(now, session.last_event_at) if session.last_event_at else now
    change = StatusChange(
        session_id=session.session_id,
        status=status,
        occurred_at=occurred_at,
        dedupe_key=reconcile_dedupe_key(session, status),
        webhook_type="status.updated",
        source="reconcile",
        workflow_id=_str_or_none(decision.get("workflow_id"), 128),
        vendor_data=_str_or_none(decision.get("vendor_data")),
        decision=decision,
        # Resolves the owner (vendor_data) when the session has none yet.
        payload=decision,
    )
    with transaction.atomic():
        # A webhook may have landed while we were asking Didit; its news may
        # be newer than our answer, so apply only onto the state we read.
        current = (
            VerificationSession.objects.select_for_update()
            .only("status", "last_event_at")
            .filter(pk=session.pk)
            .first()
        )
        if current is None or (current.status, current.last_event_at) != (
            session.status,
            session.last_event_at,
        ):
            return Outcome.SKIPPED
        applied = apply_status_change(change)
    if applied.result is not ApplyResult.APPLIED:
        return Outcome.SKIPPED
    logger.info("didit_reconcile: session %s %s -> %s", session.session_id, session.status, status)
    return Outcome.UPDATED


def reconcile(
    *,
    older_than: timedelta | None = None,
    limit: int | None = None,
    client: DiditClient | None = None,
) -> ReconcileReport:
    """Reconcile every due session (at most ``limit``). Raises DiditNotConfigured without a key.

    One session failing (Didit down, unknown session) does not stop the run;
    it is counted in the report and retried next time.
    """
    if client is None:
        # Built first so a missing API key fails the run even when nothing is due.
        with DiditClient.from_settings() as owned_client:
            return reconcile(older_than=older_than, limit=limit, client=owned_client)
    report = ReconcileReport()
    due = sessions_due(older_than)
    if limit is not None:
        due = due[:limit]
    for session in due:
        outcome = reconcile_session(session, client)
        report.checked += 1
        report.counts[outcome] += 1
        if outcome is Outcome.FAILED:
            report.failed_sessions.append(session.session_id)
    return report
