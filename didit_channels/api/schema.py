"""The REST API's OpenAPI 3 schema (drf-spectacular), served at ``<prefix>/api/schema/``.

The schema describes this app's API only: the host site's other DRF views
(its token endpoints, its own APIs) are left out, wherever the app is
mounted. Paths carry the host's prefix (``/didit/api/...`` in the demo).
The webhook and the pages are plain Django views and are not part of it.

Caveats:

* The API views set ``schema = AutoSchema()`` themselves, so the schema is
  generated whatever the host's ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``
  is. A host that builds its own site-wide schema with DRF's built-in
  generator (not drf-spectacular) should exclude these views from it.
* The schema is public (it documents the API, it holds no data), like the
  API's error messages. Restrict it with ``SPECTACULAR_SETTINGS
  ["SERVE_PERMISSIONS"]`` if your site hides its API surface.
* The serializers below describe response bodies only; the views build
  those bodies themselves.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers

from .. import __version__

__all__ = [
    "AutoSchema",
    "DecisionSerializer",
    "ErrorSerializer",
    "TicketSerializer",
    "DiditSchemaView",
    "errors",
]


class ErrorSerializer(serializers.Serializer):
    """Every error body of the API: a human-readable `detail`, often a `code`.

    DRF's own errors (401, 403, 404, 429) carry `detail`; an invalid JWT adds
    `code` and `messages`; the app's 502/503 carry `code` and `detail`.
    """

    detail = serializers.CharField()
    code = serializers.CharField(required=False)


class TicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="One-time ticket; offer it within expires_in seconds.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")
    url = serializers.CharField(help_text="Path of the WebSocket, e.g. /ws/didit/.")


class DecisionSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    status = serializers.CharField()
    decision_updated_at = serializers.DateTimeField(allow_null=True)
    decision = serializers.JSONField(
        allow_null=True,
        help_text="Didit's decision as received (identity data); null when none is held.",
    )


ERROR_DESCRIPTIONS = {
    400: "Bad request.",
    401: "Not authenticated, or the JWT is invalid or expired.",
    403: "Not allowed: missing permission, CSRF token (session login) or inactive user.",
    404: "Not found (or not visible to the caller).",
    429: "Too many requests; Retry-After says when to try again.",
    502: "Didit failed or gave an unusable answer.",
    503: "The Didit API key or workflow is not configured.",
}


def errors(*codes: int) -> dict[int, Any]:
    """Response entries for the given error status codes, all with ``ErrorSerializer``."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
        for code in codes
    }


def only_this_apps_api(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """Preprocessing hook: keep the endpoints served by didit_channels' API views.

    Selecting by the view's module rather than by path keeps the schema right
    wherever the host mounts the app.
    """
    return [
        endpoint
        for endpoint in endpoints
        if getattr(endpoint[3], "cls", None) is not None
        and endpoint[3].cls.__module__.startswith(f"{__package__}.")
        and not issubclass(endpoint[3].cls, SpectacularAPIView)
    ]


class DiditSchemaView(SpectacularAPIView):
    """``GET <prefix>/api/schema/``: the OpenAPI 3 schema of didit_channels' API.

    YAML by default; JSON with ``?format=json`` or
    ``Accept: application/vnd.oai.openapi+json``.
    """

    custom_settings = {
        "TITLE": "didit_channels API",
        "DESCRIPTION": (
            "Live identity-verification status: tickets for the WebSocket, the "
            "caller's verification sessions, and audited decisions. Authenticate "
            "with a JWT Bearer token or a Django session (+ CSRF token on POST)."
        ),
        "VERSION": __version__,
        "PREPROCESSING_HOOKS": [f"{__name__}.only_this_apps_api"],
        # Components named after serializers, with no request/response split:
        # every body here is read-only.
        "COMPONENT_SPLIT_REQUEST": False,
    }
