"""Logging out of a Django login session closes the sockets that session opened.

The status page asks for its tickets with the session cookie, so each of
them remembers a hash of the session's key (``tickets.hash_login``). On
``user_logged_out`` (Django's ``logout()`` and ``alogout()``, so also the
admin's and ``LogoutView``), this module:

1. deletes that session's tickets, so one fetched just before the logout
   cannot open a socket in its last seconds;
2. after commit, sends ``didit.logged_out`` with the hash to the user's group:
   every socket of that user, on every server process, hears it, and the
   ones the session opened close with ``4003`` and the reason
   ``"signed out"`` (the client stops and asks the user to sign in again).

The user's other sockets stay open: another browser, a phone app holding a
JWT. Set ``DIDIT_CHANNELS["CLOSE_SOCKETS_ON_LOGOUT"] = False`` to leave every
socket open until its ``MAX_CONNECTION_AGE_SECONDS``.

Caveats: a session that ends without ``logout()`` (expiry, deleted rows)
sends no signal; its sockets close at their maximum age. A password change
is handled in ``live/credentials.py``. The message goes over the
channel layer like a push: with Redis unreachable at that moment it is lost,
and the sockets close at their maximum age.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.dispatch import receiver

from ..conf import didit_settings
from . import tickets
from .groups import send_logged_out

logger = logging.getLogger("didit_channels.live")


def login_session_key(request: Any, user: Any) -> str | None:
    """The key of the Django login session ``request`` carries for ``user``, or None
    (no session, an anonymous one, or one signed in as someone else)."""
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if not key or user is None or getattr(user, "pk", None) is None:
        return None
    from django.contrib.auth import SESSION_KEY

    if session.get(SESSION_KEY) != user._meta.pk.value_to_string(user):
        return None
    return key


@receiver(user_logged_out, dispatch_uid="didit_close_sockets_on_logout")
def close_sockets_of_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if not didit_settings.CLOSE_SOCKETS_ON_LOGOUT:
        return
    login = tickets.hash_login(login_session_key(request, user))
    if not login:
        return
    try:
        with transaction.atomic():
            tickets.discard_login(user.pk, login)
    except Exception:  # noqa: BLE001 - the logout itself must go on
        logger.exception("Could not delete the tickets of a logout of user %s.", user.pk)
    transaction.on_commit(partial(send_logged_out, user.pk, login), robust=True)
