"""Resolve the site user a Didit session belongs to."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from .conf import didit_settings


def resolve_user_from_vendor_data(payload: dict[str, Any]):
    """Default resolver: ``vendor_data`` holds the user's primary key as a string.

    The app puts it there when it creates a session. Anything that is not the
    key of an existing user resolves to None, and the session is stored
    unassigned (only the admin audience hears of it).
    """
    vendor_data = payload.get("vendor_data")
    if not isinstance(vendor_data, str | int) or isinstance(vendor_data, bool):
        return None
    user_model = get_user_model()
    try:
        pk = user_model._meta.pk.to_python(str(vendor_data).strip())
        # Only the key is needed to assign the session; skip loading the row.
        return user_model._default_manager.filter(pk=pk).only("pk").first()
    except (ValidationError, ValueError, TypeError, OverflowError):
        return None


def resolve_user(payload: dict[str, Any]):
    return import_string(didit_settings.USER_RESOLVER)(payload)
