"""The sessions API: list, read and start verifications.

- ``GET  <prefix>/api/sessions/``: the caller's own sessions; every session for
  the admin audience (``didit_channels.view_all_sessions``). Cursor-paginated,
  newest first (see ``SessionPagination``).
- ``GET  <prefix>/api/sessions/<session_id>/``: one session and its status
  history; ``404`` for a session the caller may not see (whether or not it
  exists, so ids cannot be probed).
- ``POST <prefix>/api/sessions/``: start a Didit verification for the caller;
  ``201`` with the hosted ``url``. ``503`` when the Didit API key or workflow
  is not configured, ``502`` when Didit fails.

Authentication is the project's ``DEFAULT_AUTHENTICATION_CLASSES`` (the demo
site: JWT Bearer, and Django session + CSRF). No response carries decision
data; that is the audited decision endpoint's job.
"""

from __future__ import annotations

import logging

from django.db.models import Prefetch, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from ..client import DiditAPIError, DiditClient, DiditNotConfigured, DiditRateLimited
from ..conf import didit_settings
from ..models import StatusEvent, VerificationSession
from ..state import StatusChange, apply_status_change
from ..statuses import NOT_STARTED
from .schema import AutoSchema, errors
from .serializers import SESSION_FIELDS, SessionDetailSerializer, SessionSerializer

logger = logging.getLogger("didit_channels.api")

VIEW_ALL_PERMISSION = "didit_channels.view_all_sessions"
HISTORY_FIELDS = ("id", "session", "status", "previous_status", "webhook_type", "occurred_at")
# Bounds on what Didit's answer may put in our columns.
MAX_SESSION_ID = VerificationSession._meta.get_field("session_id").max_length
MAX_URL = VerificationSession._meta.get_field("url").max_length
MAX_STATUS = VerificationSession._meta.get_field("status").max_length


class SessionPagination(CursorPagination):
    """Newest first, 50 a page, ``?page_size=`` up to 200.

    A cursor rather than page numbers: one query a page (no ``COUNT(*)`` over
    every session, which the admin audience would pay on each request), and
    pages that do not shift while new sessions arrive. Ordered by creation,
    which never changes, so a session cannot jump between pages as its
    status moves.
    """

    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")

    def decode_cursor(self, request: Request):
        cursor = super().decode_cursor(request)
        # DRF checks a cursor's encoding, not its position, which is compared
        # with created_at: a forged one that is not a datetime would be a
        # database error (500) instead of DRF's 404 for an invalid cursor.
        if cursor is not None and cursor.position is not None:
            try:
                valid = parse_datetime(cursor.position) is not None
            except ValueError:
                valid = False
            if not valid:
                raise NotFound(self.invalid_cursor_message)
        return cursor


def can_view_all_sessions(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(VIEW_ALL_PERMISSION))


def visible_sessions(user) -> QuerySet[VerificationSession]:
    """Sessions ``user`` may see: their own, or all of them for the admin audience."""
    sessions = VerificationSession.objects.only(*SESSION_FIELDS)
    if can_view_all_sessions(user):
        return sessions
    return sessions.filter(user=user)


def reject_unstorable_session_id(session_id: str) -> None:
    """404 for an id no session can have: PostgreSQL text cannot hold NUL, and
    looking such an id up would be a database error (500) instead."""
    if "\x00" in session_id:
        raise NotFound()


def callback_url(request: Request) -> str:
    """Where Didit sends the user back: ``CALLBACK_URL``, or this site's status page."""
    if didit_settings.CALLBACK_URL:
        return didit_settings.CALLBACK_URL
    try:
        path = reverse("didit_channels:status")
    except NoReverseMatch:
        path = "/"
    return request.build_absolute_uri(path)


def _error(http_status: int, code: str, detail: str, **headers: str) -> Response:
    return Response({"code": code, "detail": detail}, status=http_status, headers=headers)


def _bounded_str(value: object, limit: int) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


@extend_schema(
    methods=["GET"],
    summary="List sessions: the caller's own, or all of them for the admin audience",
    responses={200: SessionSerializer(many=True), **errors(401, 403, 404)},
)
@extend_schema(
    methods=["POST"],
    summary="Start a Didit verification for the caller",
    request=None,
    responses={
        201: OpenApiResponse(SessionSerializer, description="The session, with the hosted url."),
        **errors(401, 403, 502, 503),
    },
)
@method_decorator(never_cache, name="dispatch")
class SessionListCreateView(generics.ListAPIView):
    schema = AutoSchema()  # see didit_channels.api.schema
    permission_classes = [permissions.IsAuthenticated]
    serializer_class = SessionSerializer
    pagination_class = SessionPagination

    def get_queryset(self) -> QuerySet[VerificationSession]:
        return visible_sessions(self.request.user)

    def post(self, request: Request) -> Response:
        try:
            with DiditClient.from_settings() as client:
                answer = client.create_session(
                    vendor_data=str(request.user.pk), callback=callback_url(request)
                )
        except DiditNotConfigured as exc:
            logger.error("Cannot start a Didit verification: %s", exc)
            return _error(status.HTTP_503_SERVICE_UNAVAILABLE, "didit_not_configured", str(exc))
        except DiditAPIError as exc:
            logger.warning(
                "Didit did not create a session for user %s: %s (status %s, detail %r)",
                request.user.pk,
                type(exc).__name__,
                exc.status_code,
                exc.detail,
            )
            headers = {}
            if isinstance(exc, DiditRateLimited) and exc.retry_after is not None:
                headers["Retry-After"] = str(int(exc.retry_after + 0.999))
            return _error(
                status.HTTP_502_BAD_GATEWAY,
                "didit_unavailable",
                "The verification service could not start a session. Try again later.",
                **headers,
            )

        session_id = _bounded_str(answer.get("session_id"), MAX_SESSION_ID)
        url = _bounded_str(answer.get("url"), MAX_URL)
        if session_id is None or url is None or not url.startswith(("https://", "http://")):
            logger.warning("Didit's answer to a session creation lacks a usable session_id or url")
            return _error(
                status.HTTP_502_BAD_GATEWAY,
                "didit_invalid_response",
                "The verification service gave an unexpected answer. Try again later.",
            )
        # Didit hands back the user's unfinished session instead of a new one
        # (idempotent on vendor_data), so keep the status it reports.
        reported_status = _bounded_str(answer.get("status"), MAX_STATUS) or NOT_STARTED
        applied = apply_status_change(
            StatusChange(
                session_id=session_id,
                status=reported_status,
                occurred_at=timezone.now(),
                dedupe_key=f"api:create:{session_id}"[:128],
                source="api",
                user=request.user,
                url=url,
                workflow_id=_bounded_str(answer.get("workflow_id"), 128) or None,
                vendor_data=str(request.user.pk),
            )
        )
        session = applied.session
        data = SessionSerializer(session, context={"request": request}).data
        location = reverse("didit_channels:session-detail", args=[session.session_id])
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})


@extend_schema(
    summary="One session and its status history",
    responses={200: SessionDetailSerializer, **errors(401, 403, 404)},
)
@method_decorator(never_cache, name="dispatch")
class SessionDetailView(generics.RetrieveAPIView):
    schema = AutoSchema()  # see didit_channels.api.schema
    permission_classes = [permissions.IsAuthenticated]
    serializer_class = SessionDetailSerializer
    lookup_field = "session_id"

    def get_object(self) -> VerificationSession:
        reject_unstorable_session_id(self.kwargs[self.lookup_field])
        return super().get_object()

    def get_queryset(self) -> QuerySet[VerificationSession]:
        history = StatusEvent.objects.only(*HISTORY_FIELDS).order_by("id")
        return visible_sessions(self.request.user).prefetch_related(
            Prefetch("events", queryset=history)
        )
