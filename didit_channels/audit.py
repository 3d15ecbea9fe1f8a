"""Audited reads of a verification decision (the person's identity data).

Every way the app shows a decision (the admin's "view decision" page, the
``/didit/api/sessions/<id>/decision/`` endpoint) goes through
``read_decision``: it checks the ``didit_channels.view_decision`` permission,
writes a ``DecisionAccess`` row (who, when, which session, from which address,
through which door) and only then reads the decision from the database.

Caveats:

- The audit row is written before the decision is read and is not rolled back
  if reading fails (a lost encryption key, say): the attempt itself is what
  the log is for.
- The remote address is ``request.META["REMOTE_ADDR"]``. Behind a reverse
  proxy that is the proxy's address unless a middleware you trust rewrites it
  from ``X-Forwarded-For``; the app does not read forwarded headers itself,
  since any client can send them.
- Code that loads ``session.decision`` directly bypasses the audit. Use this
  module whenever a decision is shown to a person.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from .models import DecisionAccess, VerificationSession

VIEW_DECISION_PERMISSION = "didit_channels.view_decision"


def can_view_decision(user: Any) -> bool:
    """Whether ``user`` may read decisions (inactive users never may)."""
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and user.has_perm(VIEW_DECISION_PERMISSION)
    )


def _client_address(request: Any) -> str | None:
    if request is None:
        return None
    value = (request.META.get("REMOTE_ADDR") or "").strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        # The column is an IP address; a unix-socket peer or junk is not one.
        return None


def record_access(
    session: VerificationSession, user: Any, *, via: str, request: Any = None
) -> DecisionAccess:
    """Write the audit row for one read of ``session``'s decision."""
    return DecisionAccess.objects.create(
        user=user,
        username=user.get_username(),
        session=session,
        session_ref=session.session_id,
        remote_addr=_client_address(request),
        via=via[:32],
    )


def read_decision(
    session: VerificationSession, request_or_user: HttpRequest | Any, *, via: str
) -> dict[str, Any] | None:
    """Return ``session``'s decision for a person allowed to see it, audited.

    ``request_or_user`` is the request being served, Django's or DRF's (its
    user and remote address are recorded) or, outside a request (shell, command), the user.
    ``via`` names the door: ``"admin"``, ``"api"``, ...

    Raises ``PermissionDenied`` (nothing recorded) when the user lacks
    ``didit_channels.view_decision``. Returns None when the session holds no
    decision (none received yet, purged or erased); that read is recorded too.
    The decision is read fresh from the database, not from ``session``.
    """
    # Duck-typed so a DRF Request works too: its ``user`` is the one DRF
    # authenticated (JWT, ...), which the wrapped HttpRequest does not know.
    if hasattr(request_or_user, "META"):
        request = request_or_user
        user = getattr(request_or_user, "user", None)
    else:
        request, user = None, request_or_user
    if not can_view_decision(user):
        raise PermissionDenied(
            "Reading a verification decision needs didit_channels.view_decision."
        )
    record_access(session, user, via=via, request=request)
    return (
        VerificationSession.objects.filter(pk=session.pk).values_list("decision", flat=True).first()
    )
