"""A verified webhook recorded and applied in one PostgreSQL round trip.

Through the ORM, a webhook that opens a session takes twelve statements on
PostgreSQL (BEGIN, the delivery row, the row lock, the owner, a savepoint
and the session, its release, the outcome, the ordering lock, what came
before, the history row, COMMIT), each a round trip and a query compiled in
Python; measured, they were most of a webhook's cost. So on PostgreSQL the
intake calls ``didit_channels_receive_webhook_v1`` instead, a PL/pgSQL
function created by migration 0003, which takes the same steps as
``state.apply_status_change`` in the same order, under the same row lock and
the same history-ordering lock, and inserts the delivery row already
carrying its outcome. Called outside a transaction, the call is its own
transaction: one round trip, commit included.

What differs from the Python path, and why it is safe:

* ``session_status_changed`` receivers run inside the transaction (they may
  write, or raise to roll the change back). When the signal has receivers,
  the call runs inside ``transaction.atomic()`` and they are sent the
  session and history row built from what the function returned: BEGIN,
  the call, the receivers, COMMIT: three round trips.
* The owner is resolved in the same statement as the call: with the default
  ``USER_RESOLVER``, by a subquery on the user table; with your own, by
  calling it first, outside the transaction, for every webhook (the Python
  path calls it only for a session that has no owner yet).

Turn it off with ``DIDIT_CHANNELS["WEBHOOK_ONE_ROUND_TRIP"] = False``.
``tests/test_state_postgres.py`` runs the same webhooks through both paths
and compares every row they leave.
"""

from __future__ import annotations

import contextlib
import functools
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from .conf import didit_settings
from .live.groups import Prev, publish_status
from .live.messages import status_frame
from .models import StatusEvent, VerificationSession, WebhookDelivery
from .signals import session_status_changed
from .state import Applied, ApplyResult, StatusChange
from .users import DEFAULT_RESOLVER, resolve_user, vendor_data_pk

FUNCTION = "didit_channels_receive_webhook_v1"

# The function's arguments, in the order ``_arguments`` gives them (named
# notation in the call, so the order cannot silently shift a value).
ARGUMENTS = (
    "p_user",
    "p_now",
    "p_remote_addr",
    "p_headers",
    "p_raw_body",
    "p_body_size",
    "p_event_id",
    "p_session_id",
    "p_status",
    "p_webhook_type",
    "p_occurred_at",
    "p_dedupe_key",
    "p_source",
    "p_workflow_id",
    "p_vendor_data",
    "p_decision",
)

# The session's columns the function returns, as VerificationSession attnames
# (the decision is not among them: it is encrypted, and never needed here).
SESSION_FIELDS = (
    "id",
    "session_id",
    "user_id",
    "status",
    "workflow_id",
    "vendor_data",
    "url",
    "decision_updated_at",
    "last_event_at",
    "created_at",
    "updated_at",
)

_RESULTS = {
    "accepted": ApplyResult.APPLIED,
    "duplicate": ApplyResult.DUPLICATE,
    "stale": ApplyResult.STALE,
}


def in_use(using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when the intake records and applies webhooks through the function."""
    return connections[using].vendor == "postgresql" and bool(didit_settings.WEBHOOK_ONE_ROUND_TRIP)


@functools.cache
def _call_sql(owner_by_subquery: bool, using: str) -> str:
    connection = connections[using]
    qn = connection.ops.quote_name
    user_meta = get_user_model()._meta
    pk_column = qn(user_meta.pk.column)
    if owner_by_subquery:
        # The default resolver's lookup, in the same statement: the owner if
        # a user with that key exists, else a NULL of the key's type.
        table = qn(user_meta.db_table)
        owner = f"(SELECT u.{pk_column} FROM {table} AS u WHERE u.{pk_column} = %s)"  # noqa: S608
    else:
        key_type = StatusEvent._meta.get_field("user").db_type(connection)
        owner = f"CAST(%s AS {key_type})"
    arguments = [f"p_user => {owner}"] + [f"{name} => %s" for name in ARGUMENTS[1:]]
    # Identifiers from models' _meta, quoted; every value is a parameter.
    return f"SELECT * FROM {FUNCTION}({', '.join(arguments)})"  # noqa: S608


def _owner_argument(change: StatusChange) -> tuple[bool, Any]:
    """(resolved by subquery?, the parameter): see the module doc."""
    if didit_settings.USER_RESOLVER == DEFAULT_RESOLVER:
        return True, vendor_data_pk(change.payload)
    user = resolve_user(change.payload) if change.payload else None
    return False, user.pk if user is not None else None


def _arguments(
    delivery: WebhookDelivery, change: StatusChange, now: datetime, owner: Any, using: str
) -> list[Any]:
    connection = connections[using]

    def prep(model: Any, name: str, value: Any) -> Any:
        # Exactly what the ORM would store (encryption, JSON, addresses).
        return model._meta.get_field(name).get_db_prep_value(value, connection)

    decision = change.decision
    return [
        owner,
        now,
        prep(WebhookDelivery, "remote_addr", delivery.remote_addr),
        prep(WebhookDelivery, "headers", delivery.headers),
        prep(WebhookDelivery, "raw_body", delivery.raw_body),
        delivery.body_size,
        delivery.event_id,
        change.session_id,
        change.status,
        change.webhook_type,
        change.occurred_at,
        change.dedupe_key,
        change.source,
        change.workflow_id or None,
        change.vendor_data or None,
        prep(VerificationSession, "decision", decision) if decision is not None else None,
    ]


def record_and_apply(
    delivery: WebhookDelivery, change: StatusChange, *, using: str = DEFAULT_DB_ALIAS
) -> Applied:
    """Insert ``delivery`` (unsaved; its outcome filled in) and apply ``change``: one call.

    Same outcomes as ``state.apply_status_change`` with the same delivery;
    publishes after commit. Raises ``DatabaseError`` when the call fails (then
    nothing of it was written), and whatever a signal receiver raises (then
    the transaction is rolled back).
    """
    if change.user is not None or change.url is not None:
        raise ValueError("record_and_apply takes webhook changes only (no user, no url)")
    if delivery.pk is not None:
        raise ValueError("record_and_apply inserts the delivery; it must not be saved yet")
    by_subquery, owner = _owner_argument(change)
    receivers = session_status_changed.has_listeners(VerificationSession)
    now = timezone.now()
    arguments = _arguments(delivery, change, now, owner, using)
    # With receivers, they run inside the transaction, as on the Python path.
    # Without, the call is a transaction of its own; inside a caller's
    # transaction it takes a savepoint, so a failed call leaves that usable.
    own = receivers or connections[using].in_atomic_block
    atomic = transaction.atomic(using=using) if own else contextlib.nullcontext()
    with atomic:
        with connections[using].cursor() as cursor:
            cursor.execute(_call_sql(by_subquery, using), arguments)
            columns = [column.name for column in cursor.description]
            row = dict(zip(columns, cursor.fetchone(), strict=True))
        applied = _settled(row, delivery, change, now, using)
        if applied.event is not None:
            if receivers:
                session_status_changed.send(
                    sender=VerificationSession,
                    session=applied.session,
                    event=applied.event,
                    previous_status=row["previous_status"],
                    source=change.source,
                )
            frame = status_frame(applied.event)
            user_pk = applied.event.user_id
            prev = Prev(row["prev_overall"], row["prev_owner"] if user_pk is not None else None)
            transaction.on_commit(lambda: publish_status(frame, prev), using=using)
    return applied


def _settled(
    row: dict[str, Any],
    delivery: WebhookDelivery,
    change: StatusChange,
    now: datetime,
    using: str,
) -> Applied:
    """The delivery, session and history row as saved, built from the function's answer."""
    delivery.pk = row["delivery_id"]
    delivery.received_at = delivery.processed_at = now
    delivery.outcome = row["outcome"]
    delivery.error = ""
    delivery.session_id = change.session_id
    delivery.dedupe_key = change.dedupe_key
    delivery._state.adding = False
    delivery._state.db = using

    values = [row["session_pk"], change.session_id, row["user_id"]]
    values += [row[f"session_{name}"] for name in SESSION_FIELDS[3:]]
    # Fields not given (the decision) are deferred, as state._locked_session leaves them.
    session = VerificationSession.from_db(using, SESSION_FIELDS, values)

    result = _RESULTS[row["outcome"]]
    if result is not ApplyResult.APPLIED:
        return Applied(result, session)
    event = StatusEvent(
        id=row["event_id"],
        session=session,
        user_id=row["user_id"],
        status=change.status,
        previous_status=row["previous_status"],
        webhook_type=change.webhook_type,
        occurred_at=change.occurred_at,
        recorded_at=now,
        dedupe_key=change.dedupe_key,
        source=change.source,
        delivery=delivery,
    )
    event._state.adding = False
    event._state.db = using
    return Applied(result, session, event)
