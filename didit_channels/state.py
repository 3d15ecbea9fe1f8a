"""Applying a status change to a session: the one path every source goes through.

Webhooks, ``didit_reconcile``, admin actions and the sessions API all call
``apply_status_change`` (on PostgreSQL the webhook intake calls a database
function that takes the same steps in one round trip: ``state_postgres``;
tests/test_state_postgres.py holds the two to the same results). In one
transaction it:

1. locks the session row (creating it if new), which serialises every change
   to one session across threads, processes and servers;
2. drops duplicates (same ``dedupe_key`` applied or recorded before) and stale
   changes (older than the newest applied), so retries and late deliveries
   can never roll a session back;
3. updates the session, appends one ``StatusEvent`` and sends
   ``session_status_changed``;
4. publishes the event to the sockets *after commit*.

Event ids double as the live stream's cursor, so they must become visible in
increasing order: otherwise, on PostgreSQL, a transaction holding id 10 could
commit after one holding id 11, and a client that had seen 11 and resumed
"after 11" would never get 10. ``record_event`` takes a transaction-scoped
advisory lock just before the insert, so ids are allocated in commit order
(SQLite needs nothing: its writers are already serialised).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .live.groups import Prev, publish_status
from .live.messages import status_frame
from .live.stream import newest_event_sql
from .models import StatusEvent, VerificationSession, WebhookDelivery
from .models.deliveries import DeliveryOutcome
from .signals import session_status_changed
from .workers import serialized_writes

# Arbitrary constant: the advisory lock that orders history inserts.
EVENT_ORDER_LOCK_KEY = 0x0D1D17C4


class ApplyResult(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass
class StatusChange:
    """A status change from any source, before it is applied."""

    session_id: str
    status: str
    occurred_at: datetime
    dedupe_key: str
    webhook_type: str = "status.updated"
    source: str = "webhook"
    workflow_id: str | None = None
    vendor_data: str | None = None
    decision: dict[str, Any] | None = None
    url: str | None = None
    # Resolve the owner from this payload when the session has none yet.
    payload: dict[str, Any] = field(default_factory=dict)
    # Set to a user to assign the session directly (sessions created by the API).
    user: Any = None


@dataclass
class Applied:
    result: ApplyResult
    session: VerificationSession
    event: StatusEvent | None = None


def derive_dedupe_key(
    event_id: str | None, session_id: str, status: str, webhook_type: str, timestamp: Any
) -> str:
    """``event_id`` when Didit sent one; otherwise a digest of what identifies the change."""
    if event_id:
        return f"event:{event_id}"[:128]
    material = "\x1f".join(str(part) for part in (session_id, status, webhook_type, timestamp))
    return "digest:" + hashlib.sha256(material.encode("utf-8")).hexdigest()


def _locked_session(session_id: str) -> VerificationSession | None:
    # The decision is not read here: decrypting it on every change would be
    # wasted work (assigning a new one still saves it).
    return (
        VerificationSession.objects.select_for_update()
        .defer("decision")
        .filter(session_id=session_id)
        .first()
    )


def _take_change(session: VerificationSession, change: StatusChange) -> None:
    """Copy what ``change`` says onto ``session`` (not saved)."""
    from .users import resolve_user

    if change.user is not None:
        session.user = change.user
    elif session.user_id is None and change.payload:
        session.user = resolve_user(change.payload)
    session.status = change.status
    session.last_event_at = change.occurred_at
    if change.workflow_id:
        session.workflow_id = change.workflow_id
    if change.vendor_data:
        session.vendor_data = change.vendor_data
    if change.url:
        session.url = change.url
    if change.decision is not None:
        session.decision = change.decision
        session.decision_updated_at = timezone.now()


def _create_session(change: StatusChange) -> VerificationSession | None:
    """Insert the session already carrying the change; None if another transaction won.

    A session that did not exist cannot have seen this change before (its
    history would exist), so the new one is written once, complete.
    """
    session = VerificationSession(session_id=change.session_id)
    _take_change(session, change)
    if _writers_exclusive():
        # No other writer can have inserted it since our SELECT: no savepoint.
        session.save(force_insert=True)
        return session
    try:
        with transaction.atomic():
            session.save(force_insert=True)
    except IntegrityError:
        return None
    return session


def _writers_exclusive() -> bool:
    """True when this transaction holds the database's only write lock from its start
    (SQLite in IMMEDIATE or EXCLUSIVE mode, as the demo configures it)."""
    return connection.vendor == "sqlite" and str(
        getattr(connection, "transaction_mode", None) or ""
    ).upper() in {"IMMEDIATE", "EXCLUSIVE"}


def _already_seen(change: StatusChange, delivery: WebhookDelivery | None) -> bool:
    """Applied before (a history row) or recorded as stale before (a delivery).

    One statement for both: this runs on every webhook, under the row lock.
    """
    applied = StatusEvent.objects.filter(dedupe_key=change.dedupe_key).values("pk")
    earlier = WebhookDelivery.objects.filter(
        dedupe_key=change.dedupe_key,
        outcome__in=[DeliveryOutcome.ACCEPTED, DeliveryOutcome.STALE],
    )
    if delivery is not None:
        earlier = earlier.exclude(pk=delivery.pk)
    return applied.union(earlier.values("pk"), all=True).exists()


def _take_event_order_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [EVENT_ORDER_LOCK_KEY])


def record_event(
    session: VerificationSession,
    *,
    status: str,
    previous_status: str | None,
    webhook_type: str,
    occurred_at: datetime,
    dedupe_key: str,
    source: str,
    delivery: WebhookDelivery | None = None,
) -> tuple[StatusEvent, int | None]:
    """Append a history row; returns it and what was committed before it (``Prev``:
    the newest id overall, and the newest of the session owner's events).

    Must run inside a transaction and be the last write before commit: the
    ordering lock is held until the transaction ends.
    """
    _take_event_order_lock()
    prev = _newest_before(session.user_id)
    event = StatusEvent.objects.create(
        session=session,
        user_id=session.user_id,
        status=status,
        previous_status=previous_status,
        webhook_type=webhook_type,
        occurred_at=occurred_at,
        dedupe_key=dedupe_key,
        source=source,
        delivery=delivery,
    )
    return event, prev


def _newest_before(user_id: Any) -> Prev:
    """The newest history id, and the newest of ``user_id``'s: one round trip, both indexed."""
    user_pk = StatusEvent._meta.get_field("user").get_db_prep_value(user_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {newest_event_sql()}, {newest_event_sql(of_one_user=True)}", [user_pk]
        )
        overall, owner = cursor.fetchone()
    return Prev(overall=overall, owner=owner if user_id is not None else None)


def _finish_delivery(delivery: WebhookDelivery | None, outcome: str, change: StatusChange) -> None:
    if delivery is None:
        return
    delivery.outcome = outcome
    delivery.processed_at = timezone.now()
    delivery.error = ""
    # The delivery keeps the change's dedupe key: _already_seen finds an
    # earlier stale copy only through it. The judged fields the caller set on
    # the instance (signature_valid, event_id) go in the same statement.
    delivery.dedupe_key = change.dedupe_key
    delivery.session_id = change.session_id
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        outcome=outcome,
        processed_at=delivery.processed_at,
        error="",
        dedupe_key=delivery.dedupe_key,
        session_id=delivery.session_id,
        event_id=delivery.event_id,
        signature_valid=delivery.signature_valid,
    )


def apply_status_change(
    change: StatusChange, *, delivery: WebhookDelivery | None = None, savepoint: bool = True
) -> Applied:
    """Apply ``change`` once and in order; publish it after commit.

    ``delivery``, when given, gets its outcome in the same transaction, so a
    concurrent copy of the same delivery sees it as soon as it may proceed.
    ``savepoint=False``, inside a caller's transaction: no savepoint around
    the change (two statements fewer); if it fails, the caller's whole
    transaction must be rolled back (the webhook intake does).
    """
    with serialized_writes(), transaction.atomic(savepoint=savepoint):
        session = _locked_session(change.session_id)
        created = None
        if session is None:
            created = _create_session(change)
            # None: created concurrently; wait for that transaction and lock the row.
            session = created or _locked_session(change.session_id)
        if created is not None:
            previous_status = None
        else:
            if _already_seen(change, delivery):
                _finish_delivery(delivery, DeliveryOutcome.DUPLICATE, change)
                return Applied(ApplyResult.DUPLICATE, session)
            if session.last_event_at is not None and change.occurred_at < session.last_event_at:
                _finish_delivery(delivery, DeliveryOutcome.STALE, change)
                return Applied(ApplyResult.STALE, session)
            previous_status = session.status
            _take_change(session, change)
            session.save()
        _finish_delivery(delivery, DeliveryOutcome.ACCEPTED, change)

        event, prev = record_event(
            session,
            status=change.status,
            previous_status=previous_status,
            webhook_type=change.webhook_type,
            occurred_at=change.occurred_at,
            dedupe_key=change.dedupe_key,
            source=change.source,
            delivery=delivery,
        )
        session_status_changed.send(
            sender=VerificationSession,
            session=session,
            event=event,
            previous_status=previous_status,
            source=change.source,
        )
        frame = status_frame(event)
        transaction.on_commit(lambda: publish_status(frame, prev))
    return Applied(ApplyResult.APPLIED, session, event)
