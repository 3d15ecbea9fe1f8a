"""Resolve the site user a Didit session belongs to."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from .conf import didit_settings

DEFAULT_RESOLVER = "didit_channels.users.resolve_user_from_vendor_data"


def resolve_user_from_vendor_data(payload: dict[str, Any]):
    """Default resolver: ``vendor_data`` holds the user's primary key as a string.

    The app puts it there when it creates a session. Anything that is not the
    key of an existing user resolves to None, and the session is stored
    unassigned (only the admin audience hears of it).
    """
    pk = vendor_data_pk(payload)
    if pk is None:
        return None
    try:
        # Only the key is needed to assign the session; skip loading the row.
        return get_user_model()._default_manager.filter(pk=pk).only("pk").first()
    except (ValueError, TypeError, OverflowError):  # e.g. over SQLite's 64-bit integers
        return None


def vendor_data_pk(payload: dict[str, Any]) -> Any:
    """The user key ``vendor_data`` names, if it is one (the user may not exist); else None."""
    vendor_data = payload.get("vendor_data")
    if not isinstance(vendor_data, str | int) or isinstance(vendor_data, bool):
        return None
    try:
        return get_user_model()._meta.pk.to_python(str(vendor_data).strip())
    except (ValidationError, ValueError, TypeError, OverflowError):
        return None


def resolve_user(payload: dict[str, Any]):
    return import_string(didit_settings.USER_RESOLVER)(payload)
