"""What a socket may see: the user's audiences, read in SQL.

A socket's audiences rest on two facts about its user: the account is active
(the user audience) and it holds ``didit_channels.view_all_sessions`` (the
admin audience). Both are read as SQL expressions so that the ticket can be
consumed and the audiences computed in one statement (``tickets.consume``),
and so that a revocation check costs one query (``read_access``).

The permission test mirrors Django's ``ModelBackend``: superuser, a direct
user permission, or a permission of one of the user's groups. Caveats:

* Permissions granted only by a custom authentication backend are not seen.
* A custom user model without ``PermissionsMixin`` (no ``is_superuser``,
  ``groups``, ``user_permissions``) falls back to ``user.has_perm()``, which
  asks every configured backend but costs a second query. A user model
  without an ``is_active`` field counts every user as active.
"""

# Identifiers in the SQL below come from models' _meta, quoted; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist
from django.db import connection

VIEW_ALL_APP_LABEL = "didit_channels"
VIEW_ALL_CODENAME = "view_all_sessions"
VIEW_ALL_PERMISSION = f"{VIEW_ALL_APP_LABEL}.{VIEW_ALL_CODENAME}"

USER = "user"
ADMIN = "admin"


@dataclass(frozen=True)
class Access:
    """A user's standing as read from the database."""

    user_pk: Any
    is_active: bool
    view_all: bool

    @property
    def audiences(self) -> list[str]:
        return [USER, ADMIN] if self.view_all else [USER]


def _concrete_field(model, name: str):
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    # A column, or a many-to-many declared on the model (not a reverse relation).
    declared_m2m = field.many_to_many and not field.auto_created
    return field if getattr(field, "concrete", False) or declared_m2m else None


def has_permissions_mixin() -> bool:
    """True when the user model stores permissions the way ``PermissionsMixin`` does."""
    user_model = get_user_model()
    return all(
        _concrete_field(user_model, name) is not None
        for name in ("is_superuser", "groups", "user_permissions")
    )


def access_sql(user_id_sql: str) -> tuple[str, str, list[Any]]:
    """SQL for ``is_active`` and ``view_all`` of the user whose pk is ``user_id_sql``.

    ``user_id_sql`` is a column reference (e.g. a ticket's ``user_id``), never
    user input. Returns ``(active_sql, view_all_sql, view_all_params)``
    (``active_sql`` takes no parameters). ``active_sql`` is NULL when the user does not exist;
    ``view_all_sql`` is NULL when the user model has no ``PermissionsMixin``
    (the caller then asks ``has_perm``).
    """
    qn = connection.ops.quote_name
    user_model = get_user_model()
    users = qn(user_model._meta.db_table)
    user_pk = qn(user_model._meta.pk.column)

    active_field = _concrete_field(user_model, "is_active")
    active_value = (
        f"CASE WHEN u_a.{qn(active_field.column)} THEN 1 ELSE 0 END"
        if active_field is not None
        else "1"
    )
    # A scalar subquery: NULL when the row is gone, so "deleted" reads as "no access".
    active_sql = f"(SELECT {active_value} FROM {users} u_a WHERE u_a.{user_pk} = {user_id_sql})"
    if not has_permissions_mixin():
        return active_sql, "NULL", []

    permissions = qn(Permission._meta.db_table)
    perm_pk = qn(Permission._meta.pk.column)
    perm_codename = qn(Permission._meta.get_field("codename").column)
    perm_ct = qn(Permission._meta.get_field("content_type").column)
    content_types = qn(ContentType._meta.db_table)
    ct_pk = qn(ContentType._meta.pk.column)
    ct_app = qn(ContentType._meta.get_field("app_label").column)

    user_perms = user_model._meta.get_field("user_permissions")
    user_groups = user_model._meta.get_field("groups")
    group_perms = Group._meta.get_field("permissions")

    is_the_permission = (
        f"JOIN {permissions} p ON p.{perm_pk} = {{perm_ref}} "
        f"JOIN {content_types} ct ON ct.{ct_pk} = p.{perm_ct} "
        f"WHERE p.{perm_codename} = %s AND ct.{ct_app} = %s"
    )
    direct = (
        f"EXISTS (SELECT 1 FROM {qn(user_perms.m2m_db_table())} up "
        + is_the_permission.format(perm_ref=f"up.{qn(user_perms.m2m_reverse_name())}")
        + f" AND up.{qn(user_perms.m2m_column_name())} = {user_id_sql})"
    )
    through_group = (
        f"EXISTS (SELECT 1 FROM {qn(user_groups.m2m_db_table())} ug "
        f"JOIN {qn(group_perms.m2m_db_table())} gp "
        f"ON gp.{qn(group_perms.m2m_column_name())} = ug.{qn(user_groups.m2m_reverse_name())} "
        + is_the_permission.format(perm_ref=f"gp.{qn(group_perms.m2m_reverse_name())}")
        + f" AND ug.{qn(user_groups.m2m_column_name())} = {user_id_sql})"
    )
    superuser_column = qn(user_model._meta.get_field("is_superuser").column)
    superuser = (
        f"EXISTS (SELECT 1 FROM {users} u_s "
        f"WHERE u_s.{user_pk} = {user_id_sql} AND u_s.{superuser_column})"
    )
    view_all_sql = f"(CASE WHEN {superuser} OR {direct} OR {through_group} THEN 1 ELSE 0 END)"
    view_all_params = [VIEW_ALL_CODENAME, VIEW_ALL_APP_LABEL] * 2
    return active_sql, view_all_sql, view_all_params


def normalise_pk(raw: Any) -> Any:
    """A pk read by raw SQL, as the ORM would give it (UUIDs on SQLite are hex text)."""
    return get_user_model()._meta.pk.to_python(raw)


def view_all_by_backends(user_pk: Any) -> bool:
    """The fallback for user models without ``PermissionsMixin``: ask the backends."""
    user = get_user_model()._default_manager.filter(pk=user_pk).first()
    return bool(user is not None and user.has_perm(VIEW_ALL_PERMISSION))


def read_access(user_pk: Any) -> Access | None:
    """The user's standing now, in one query; None when the user no longer exists."""
    user_model = get_user_model()
    sql, view_all_params = _access_statement(connection.vendor, user_model, has_permissions_mixin())
    with connection.cursor() as cursor:
        db_pk = user_model._meta.pk.get_db_prep_value(user_pk, connection)
        cursor.execute(sql, [*view_all_params, db_pk])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    view_all = bool(row[1]) if row[1] is not None else view_all_by_backends(user_pk)
    return Access(user_pk=user_pk, is_active=bool(row[0]), view_all=view_all)


@functools.lru_cache(maxsize=16)
def _access_statement(vendor: str, user_model: Any, mixin: bool) -> tuple[str, tuple]:
    # Keyed by what the SQL depends on; built once per process, not per socket.
    qn = connection.ops.quote_name
    pk_ref = f"u0.{qn(user_model._meta.pk.column)}"
    active_sql, view_all_sql, view_all_params = access_sql(pk_ref)
    sql = (
        f"SELECT {active_sql}, {view_all_sql} "
        f"FROM {qn(user_model._meta.db_table)} u0 WHERE {pk_ref} = %s"
    )
    return sql, tuple(view_all_params)
