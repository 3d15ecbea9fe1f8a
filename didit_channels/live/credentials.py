"""A password change closes the user's sockets; only still-valid credentials reopen them.

Changing a password is how a user throws out someone who learned it. Django
does its part at the next request: every login session whose stored
password hash no longer matches is flushed (the one that changed it is kept by
``update_session_auth_hash``). A socket is not a request, so without this module
a socket opened from a thrown-out login would keep receiving the user's
status changes until its ``MAX_CONNECTION_AGE_SECONDS``.

When a save changes a user's stored password hash (``set_password()`` then
``save()``, the admin's password form, ``PasswordChangeView``,
``set_unusable_password()``), this module:

1. deletes the user's unspent tickets, in the same transaction, so one
   fetched with the old credentials cannot open a socket afterwards;
2. after commit, sends ``didit.credentials_changed`` to the user's group:
   every socket of that user, on every server process, closes with ``1001``
   and the reason ``"credentials changed"``.

A client treats 1001 as "reconnect with a new ticket" (``live.js`` does, as
after the connection age limit) and resumes from its cursor, so nothing is
missed. The new ticket is granted by the site's own authentication: the login
that changed the password gets one, a login Django has flushed gets 401/403
and its page stops. A bearer token that the site still accepts after a
password change (simplejwt's default) gets one too: that is the site's policy
for tokens, not this app's to override.

Cost: one query per full save of an existing user (the stored hash, read to
compare); saves naming ``update_fields`` without ``password`` (the login's
``last_login``) cost nothing. A hash rewritten on login because the hasher's
parameters changed counts as a change too: the user's sockets reconnect once.
Caveat: ``QuerySet.update(password=...)``, raw SQL and changes outside Django
send no signal; call ``didit_channels.live.groups.send_credentials_changed(pk)``
after them. Turn it off with ``DIDIT_CHANNELS["CLOSE_SOCKETS_ON_PASSWORD_CHANGE"]
= False``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from ..conf import didit_settings
from . import tickets
from .groups import send_credentials_changed

logger = logging.getLogger("didit_channels.live")

_CHANGED = "_didit_password_changed"


def _has_password(model: Any) -> bool:
    try:
        model._meta.get_field("password")
    except FieldDoesNotExist:  # a user model without AbstractBaseUser
        return False
    return True


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="didit_password_before_save")
def note_password_change(
    sender: Any,
    instance: Any,
    raw: bool = False,
    using: Any = None,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    instance.__dict__.pop(_CHANGED, None)
    if raw or not didit_settings.CLOSE_SOCKETS_ON_PASSWORD_CHANGE:
        return
    if instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    if not _has_password(sender):
        return
    stored = (
        sender._base_manager.using(using)
        .filter(pk=instance.pk)
        .values_list("password", flat=True)
        .first()
    )
    if stored is not None and stored != instance.password:
        instance.__dict__[_CHANGED] = True


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="didit_password_after_save")
def close_sockets_after_password_change(
    sender: Any, instance: Any, using: Any = None, **kwargs: Any
) -> None:
    if not instance.__dict__.pop(_CHANGED, False):
        return
    tickets.discard_user(instance.pk)
    logger.info("Password of user %s changed: closing their sockets.", instance.pk)
    transaction.on_commit(partial(send_credentials_changed, instance.pk), using=using, robust=True)
