"""Close a user's sockets (4003) when they lose what their audiences rest on.

A socket in the user audience rests on the account existing and being
active; one in the admin audience also on ``view_all_sessions``. Whenever
that may have changed, a ``didit.revoke_check`` goes out over the channel
layer after commit, so it reaches the sockets on every server process; each
socket re-reads its access (one query) and closes with 4003 if it lost it.

What triggers a check:

* a user saved (``is_active``/``is_superuser`` may have changed; saves that
  name other ``update_fields``, such as ``last_login``, are skipped) or deleted;
* a user removed from groups, or direct permissions taken away (either side
  of the relation, ``remove`` and ``clear``): that user's sockets;
* permissions taken from a group, a group deleted, or the permission itself
  deleted: every admin socket re-checks (one message to the admin group
  instead of one per member: a group delete cascades without m2m signals).

Caveat: changes made with ``QuerySet.update()``, raw SQL or outside Django
send no signals; call ``didit_channels.live.groups.send_revoke_check(pk)``
after them.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import FieldDoesNotExist
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.dispatch import receiver

from .access import VIEW_ALL_APP_LABEL, VIEW_ALL_CODENAME
from .groups import REVOKE_CHECK, admin_group, bounded, send_revoke_check

logger = logging.getLogger("didit_channels.live")

WATCHED_USER_FIELDS = frozenset({"is_active", "is_superuser"})


async def asend_admin_revoke_check() -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await bounded(layer.group_send(admin_group(), {"type": REVOKE_CHECK}))
    except Exception:  # noqa: BLE001 - logged; nothing else can be done after commit
        logger.error("Could not ask admin sockets to re-check access.", exc_info=True)


def send_admin_revoke_check() -> None:
    """Ask every socket in the admin audience, on every process, to re-check access."""
    async_to_sync(asend_admin_revoke_check)()


def _check_users_after_commit(user_pks: Any) -> None:
    for pk in {pk for pk in user_pks or () if pk is not None}:
        transaction.on_commit(partial(send_revoke_check, pk), robust=True)


def _check_admins_after_commit() -> None:
    transaction.on_commit(send_admin_revoke_check, robust=True)


def _is_view_all(permission: Permission) -> bool:
    return (
        permission.codename == VIEW_ALL_CODENAME
        and permission.content_type.app_label == VIEW_ALL_APP_LABEL
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="didit_revoke_user_saved")
def user_saved(sender: Any, instance: Any, created: bool, update_fields=None, **kwargs) -> None:
    if created:
        return
    if update_fields is not None and not WATCHED_USER_FIELDS.intersection(update_fields):
        return
    _check_users_after_commit([instance.pk])


@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="didit_revoke_user_gone")
def user_deleted(sender: Any, instance: Any, **kwargs) -> None:
    _check_users_after_commit([instance.pk])


def _stash_members_before_clear(instance: Any, users_of) -> None:
    # post_clear does not say who was removed; remember it before the rows go.
    instance._didit_cleared_user_pks = list(users_of(instance).values_list("pk", flat=True))


def _user_relation_changed(*, instance, action, reverse, pk_set, users_of) -> None:
    if action == "pre_clear" and reverse:
        _stash_members_before_clear(instance, users_of)
    elif action in ("post_remove", "post_clear") and not reverse:
        _check_users_after_commit([instance.pk])
    elif action == "post_remove":
        _check_users_after_commit(pk_set)
    elif action == "post_clear":
        _check_users_after_commit(getattr(instance, "_didit_cleared_user_pks", ()))


def _connect_user_relations() -> None:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    for name in ("groups", "user_permissions"):
        try:
            field = user_model._meta.get_field(name)
        except FieldDoesNotExist:  # a user model without PermissionsMixin
            continue

        def users_of(obj, _name=name):
            return user_model._default_manager.filter(**{_name: obj})

        def on_change(sender, instance, action, reverse, pk_set, _users_of=users_of, **kwargs):
            _user_relation_changed(
                instance=instance,
                action=action,
                reverse=reverse,
                pk_set=pk_set,
                users_of=_users_of,
            )

        m2m_changed.connect(
            on_change,
            sender=field.remote_field.through,
            weak=False,
            dispatch_uid=f"didit_revoke_user_{name}",
        )


_connect_user_relations()


@receiver(m2m_changed, sender=Group.permissions.through, dispatch_uid="didit_revoke_group_perms")
def group_permissions_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    if action == "post_clear":
        _check_admins_after_commit()
    elif action == "post_remove":
        if reverse:  # instance is the Permission
            relevant = isinstance(instance, Permission) and _is_view_all(instance)
        else:
            relevant = Permission.objects.filter(
                pk__in=pk_set or (),
                codename=VIEW_ALL_CODENAME,
                content_type__app_label=VIEW_ALL_APP_LABEL,
            ).exists()
        if relevant:
            _check_admins_after_commit()


@receiver(pre_delete, sender=Group, dispatch_uid="didit_revoke_group_deleted")
def group_deleted(sender, instance, **kwargs) -> None:
    _check_admins_after_commit()


@receiver(pre_delete, sender=Permission, dispatch_uid="didit_revoke_permission_deleted")
def permission_deleted(sender, instance, **kwargs) -> None:
    if _is_view_all(instance):
        _check_admins_after_commit()
