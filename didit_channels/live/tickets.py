"""One-time WebSocket tickets: issued over the authenticated REST API, spent by the socket.

Browsers cannot put an ``Authorization`` header on a WebSocket handshake, and
a session cookie alone would let any page the user visits open a socket in
their name. So the socket is opened with a ticket: 256 random bits, fetched
over the authenticated API, valid for ``TICKET_TTL_SECONDS`` (30 s), good for
one handshake. Only its SHA-256 is stored; the ticket itself is never logged.

``consume`` spends a ticket and reads the user's audiences in one UPDATE ...
RETURNING (PostgreSQL, SQLite >= 3.35): two handshakes racing with one ticket
cannot both see it unused, because the second waits for the first's row lock
and then finds ``used_at`` set.

A ticket reads ``<user>.<secret>``: the user's primary key (base64url) and
the 256 random bits. The hash covers both, so the user part cannot be
changed, and it lets the socket join its user's group *before* the database
says whether the ticket is good — which is what makes one database round
trip enough for a handshake (``consumers.StatusConsumer.connect``). It names
the user to whoever holds the ticket, who is that user.

With ``TICKET_BIND_CLIENT_IP`` on, the ticket also remembers the address that
asked for it and only opens a socket from that address. Both sides must see
the same client address: behind a proxy, run the ASGI server with its proxy
headers option (``daphne --proxy-headers``) and Django with the matching
``REMOTE_ADDR`` handling, or leave the setting off.

A ticket asked for from a Django login session (the status page's, with its
session cookie) also remembers a hash of that session's key, so that logging
out of it closes the sockets it opened (``live/logout.py``). Bearer-token
clients have no login session and their tickets remember none.
"""

# Identifiers in the SQL below come from models' _meta, quoted; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from ..conf import didit_settings
from ..models import ConnectionTicket
from ..workers import serialized_writes
from .access import Access, access_sql, normalise_pk, view_all_by_backends

TICKET_BYTES = 32
# A ticket's secret is 43 characters and its user part a few dozen; anything
# much longer is not one (and is not hashed).
MAX_TICKET_LENGTH = 160


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    expires_in: int


@dataclass(frozen=True)
class SpentTicket(Access):
    """The owner's access, read as the ticket was spent, and the login it was issued to."""

    login_hash: str = ""


def hash_ticket(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8")).hexdigest()


def hash_login(session_key: str | None) -> str:
    """What a ticket stores of the login session it was issued to: never the key itself
    (a session key is a credential), "" for none."""
    if not session_key:
        return ""
    return hashlib.sha256(f"didit-login:{session_key}".encode()).hexdigest()


def normalise_ip(value: str | None) -> str | None:
    """The canonical text of an IP address, or None for anything that is not one."""
    if not value:
        return None
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return None


def issue(
    user: Any, *, client_ip: str | None = None, login_session: str | None = None
) -> IssuedTicket:
    """Create a ticket for an active ``user``; returns the only copy of its secret.

    ``client_ip`` is stored (and later enforced) only when
    ``TICKET_BIND_CLIENT_IP`` is on. ``login_session`` is the key of the
    Django login session asking for it, if any; only its hash is stored. The
    user's spent and expired tickets are deleted on the way, so the table
    holds only live ones.
    """
    if not getattr(user, "is_active", True):
        raise ValueError("Tickets are issued to active users only.")
    now = timezone.now()
    ttl = int(didit_settings.TICKET_TTL_SECONDS)
    ticket = f"{_encode_user(user.pk)}.{secrets.token_urlsafe(TICKET_BYTES)}"
    bound_ip = normalise_ip(client_ip) if didit_settings.TICKET_BIND_CLIENT_IP else None
    fields = ConnectionTicket._meta.get_field
    user_pk = fields("user").get_db_prep_value(user.pk, connection)
    stamp = connection.ops.adapt_datetimefield_value(now)
    if connection.vendor == "postgresql":
        # The clean-up and the insert as one statement, its own transaction
        # outside a caller's: one round trip instead of four (BEGIN, DELETE,
        # INSERT, COMMIT), which bench/bench_handshake.py measured.
        with connection.cursor() as cursor:
            cursor.execute(
                _issue_statement_postgres(),
                [
                    user_pk,
                    stamp,
                    hash_ticket(ticket),
                    user_pk,
                    stamp,
                    connection.ops.adapt_datetimefield_value(now + timedelta(seconds=ttl)),
                    fields("client_ip").get_db_prep_value(bound_ip, connection),
                    hash_login(login_session),
                ],
            )
        return IssuedTicket(ticket=ticket, expires_in=ttl)
    # One transaction (one commit); the clean-up is one plain DELETE: the
    # ORM's delete() collects related objects first, which a ticket has none
    # of, and showed in the profile of the ticket request.
    with serialized_writes(), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_delete_spent_statement(), [user_pk, stamp])
        ConnectionTicket.objects.create(
            token_hash=hash_ticket(ticket),
            user=user,
            expires_at=now + timedelta(seconds=ttl),
            client_ip=bound_ip,
            login_hash=hash_login(login_session),
        )
    return IssuedTicket(ticket=ticket, expires_in=ttl)


def _encode_user(pk: Any) -> str:
    return base64.urlsafe_b64encode(str(pk).encode("utf-8")).rstrip(b"=").decode("ascii")


def ticket_user(ticket: str | None) -> Any:
    """The primary key a ticket names (not yet checked: ``consume`` checks), or None
    when ``ticket`` is not shaped like one."""
    if not ticket or len(ticket) > MAX_TICKET_LENGTH or ticket.count(".") != 1:
        return None
    encoded, secret = ticket.split(".")
    if not encoded or len(secret) < TICKET_BYTES:
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
        return normalise_pk(raw)
    except (ValueError, ValidationError):  # binascii.Error and UnicodeError are ValueErrors
        return None


def _delete_spent_statement() -> str:
    """DELETE a user's spent and expired tickets (parameters: user pk, now)."""
    qn = connection.ops.quote_name
    meta = ConnectionTicket._meta

    def column(name: str) -> str:
        return qn(meta.get_field(name).column)

    return (
        f"DELETE FROM {qn(meta.db_table)} WHERE {column('user')} = %s "
        f"AND ({column('used_at')} IS NOT NULL OR {column('expires_at')} <= %s)"
    )


def _issue_statement_postgres() -> str:
    """The user's spent and expired tickets deleted and the new one inserted, in one
    statement (parameters: the DELETE's two, then the INSERT's six)."""
    qn = connection.ops.quote_name
    meta = ConnectionTicket._meta
    columns = ", ".join(
        qn(meta.get_field(name).column)
        for name in ("token_hash", "user", "created_at", "expires_at", "client_ip", "login_hash")
    )
    return (
        f"WITH spent AS ({_delete_spent_statement()}) "
        f"INSERT INTO {qn(meta.db_table)} ({columns}) "
        "VALUES (%s, %s, %s, %s, CAST(%s AS inet), %s)"
    )


def _consume_statement() -> tuple[str, list[Any]]:
    """The UPDATE ... RETURNING that spends a ticket, and its trailing parameters."""
    qn = connection.ops.quote_name
    meta = ConnectionTicket._meta
    table = qn(meta.db_table)

    def column(name: str) -> str:
        return qn(meta.get_field(name).column)

    user_id = f"{table}.{column('user')}"
    active_sql, view_all_sql, view_all_params = access_sql(user_id)
    # The address arrives as text; PostgreSQL stores it as inet.
    ip_param = "CAST(%s AS inet)" if connection.vendor == "postgresql" else "%s"
    sql = (
        f"UPDATE {table} SET {column('used_at')} = %s "
        f"WHERE {column('token_hash')} = %s AND {column('used_at')} IS NULL "
        f"AND {column('expires_at')} > %s "
        f"AND ({column('client_ip')} IS NULL OR {column('client_ip')} = {ip_param}) "
        f"RETURNING {user_id}, {active_sql}, {view_all_sql}, {column('login_hash')}"
    )
    return sql, view_all_params


def consume(ticket: str | None, *, client_ip: str | None = None) -> SpentTicket | None:
    """Spend ``ticket``; the owner's access (and the ticket's login) if it was unused,
    unexpired and (if bound) presented from its address, else None. One database
    statement.

    An unknown, expired, spent or wrongly-bound ticket gives None alike, and
    a ticket presented from the wrong address is not spent.
    """
    if not ticket or len(ticket) > MAX_TICKET_LENGTH:
        return None
    sql, returning_params = _consume_statement()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = [now, hash_ticket(ticket), now, normalise_ip(client_ip), *returning_params]
    with serialized_writes(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    user_pk = normalise_pk(row[0])
    if row[1] is None:  # the user row vanished under us
        return None
    view_all = bool(row[2]) if row[2] is not None else view_all_by_backends(user_pk)
    return SpentTicket(
        user_pk=user_pk, is_active=bool(row[1]), view_all=view_all, login_hash=row[3] or ""
    )


def discard_login(user_pk: Any, login_hash: str) -> int:
    """Delete the tickets ``user_pk`` was issued from one login session (a logout):
    an unspent one would otherwise still open a socket for its last seconds."""
    if not login_hash:
        return 0
    with serialized_writes():
        deleted, _ = ConnectionTicket.objects.filter(
            user_id=user_pk, login_hash=login_hash
        ).delete()
    return deleted


def discard_user(user_pk: Any) -> int:
    """Delete every unspent ticket of ``user_pk`` (its password changed): one fetched
    with the old credentials must not open a socket after the change."""
    with serialized_writes():
        deleted, _ = ConnectionTicket.objects.filter(user_id=user_pk).delete()
    return deleted
