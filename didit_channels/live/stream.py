"""The database side of a socket's stream: the snapshot and history reads.

Identifiers in the snapshot's SQL come from the model's _meta, quoted; every
value is a parameter.

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

import functools
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from ..conf import didit_settings
from ..models import StatusEvent, VerificationSession
from . import tickets
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

    access: tickets.SpentTicket | None
    cursor: int
    sessions: list[dict[str, Any]]


def latest_event_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {newest_event_sql()}")
        return cursor.fetchone()[0] or 0


def visible_events(user_pk: Any, admin: bool) -> QuerySet[StatusEvent]:
    events = StatusEvent.objects.all()
    if not admin:
        events = events.filter(user_id=user_pk)
    # The session's decision is encrypted personal data: never loaded here.
    return events.select_related("session").only(*_EVENT_FIELDS).order_by("id")


def newest_event_sql(*, of_one_user: bool = False) -> str:
    """``(SELECT MAX(id) ...)`` over the history, as a scalar subquery; with
    ``of_one_user``, only the events of the user given as its ``%s``."""
    qn = connection.ops.quote_name
    meta = StatusEvent._meta
    where = f" WHERE {qn(meta.get_field('user').column)} = %s" if of_one_user else ""
    # Identifiers from the model's _meta, quoted; values are parameters.
    return f"(SELECT MAX({qn(meta.pk.column)}) FROM {qn(meta.db_table)}{where})"  # noqa: S608


def open_with_ticket(ticket: str, client_ip: str | None) -> Opening | None:
    """A handshake's whole database share: spend ``ticket`` (reading the owner's access),
    then the cursor and the snapshot. None when the ticket is not good.

    The socket has joined its user's group before this runs (the ticket names
    the user), so a revocation committed after the access is read here is
    heard; see ``consumers.StatusConsumer.connect``.
    """
    access = tickets.consume(ticket, client_ip=client_ip)
    if access is None or not access.is_active:
        return Opening(access, 0, []) if access is not None else None
    # The cursor before the sessions: the snapshot then reflects at least
    # everything up to it (a change landing in between is also sent live).
    cursor = latest_event_id()
    return Opening(access, cursor, _snapshot(access.user_pk, access.view_all))


def _snapshot(user_pk: Any, admin: bool) -> list[dict[str, Any]]:
    """The sessions a socket starts from, most recently updated first.

    Raw SQL built once per process: compiling the equivalent queryset was
    half of a handshake's database share (``scripts/profile_hotpaths.py
    connect``). Dates go through the backend's own converters, as the ORM's do.
    """
    if admin:
        params = [int(didit_settings.ADMIN_SNAPSHOT_LIMIT)]
    else:
        field = VerificationSession._meta.get_field("user")
        params = [field.get_db_prep_value(user_pk, connection)]
    with connection.cursor() as cursor:
        cursor.execute(_snapshot_sql(connection.vendor, admin), params)
        rows = cursor.fetchall()
    column, converters = _updated_at_converters(connection.vendor)
    entries = []
    for session_id, status, updated_at in rows:
        for convert in converters:
            updated_at = convert(updated_at, column, connection)
        entries.append(snapshot_entry(session_id, status, updated_at))
    return entries


@functools.lru_cache(maxsize=8)
def _snapshot_sql(vendor: str, admin: bool) -> str:
    qn = connection.ops.quote_name
    meta = VerificationSession._meta

    def column(name: str) -> str:
        return qn(meta.get_field(name).column)

    where = "" if admin else f" WHERE {column('user')} = %s"
    limit = " LIMIT %s" if admin else ""
    columns = f"{column('session_id')}, {column('status')}, {column('updated_at')}"
    order = f"ORDER BY {column('updated_at')} DESC{limit}"
    return f"SELECT {columns} FROM {qn(meta.db_table)}{where} {order}"  # noqa: S608


@functools.lru_cache(maxsize=8)
def _updated_at_converters(vendor: str) -> tuple[Any, list[Any]]:
    column = VerificationSession._meta.get_field("updated_at").get_col(
        VerificationSession._meta.db_table
    )
    return column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)


def history_batch(user_pk: Any, admin: bool, after: int, upto: int) -> list[dict[str, Any]]:
    """Up to ``BATCH_SIZE`` status frames this socket may see with ``after < id <= upto``,
    oldest first. Fewer than ``BATCH_SIZE`` means there are no more."""
    events = visible_events(user_pk, admin).filter(id__gt=after, id__lte=upto)
    return [status_frame(event) for event in events[:BATCH_SIZE]]
