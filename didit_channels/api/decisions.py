"""``GET <prefix>/api/sessions/<session_id>/decision/``: one session's decision, audited.

The decision is the person's identity data (name, date of birth, document
numbers, image links). Reading it needs ``didit_channels.view_decision``;
being the session's owner or in the admin audience is not enough. Every
successful read writes a ``DecisionAccess`` row (see ``didit_channels.audit``).

Responses: ``200`` ``{"session_id", "status", "decision_updated_at",
"decision"}`` (``decision`` is null when none is held: not received yet,
purged or erased); ``401`` unauthenticated; ``403`` without the permission,
whether or not the session exists; ``404`` unknown session. Never cached.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..audit import can_view_decision, read_decision
from ..models import VerificationSession
from .schema import AutoSchema, DecisionSerializer, errors
from .sessions import reject_unstorable_session_id


class CanViewDecision(permissions.BasePermission):
    message = "Reading a verification decision needs the didit_channels.view_decision permission."

    def has_permission(self, request, view) -> bool:
        return can_view_decision(request.user)


@extend_schema(
    summary="Read one session's decision (identity data; every read is audited)",
    responses={
        200: OpenApiResponse(DecisionSerializer, description="The decision, or null."),
        **errors(401, 403, 404),
    },
)
@method_decorator(never_cache, name="dispatch")
class SessionDecisionView(APIView):
    schema = AutoSchema()  # see didit_channels.api.schema
    # Authentication: the project's DEFAULT_AUTHENTICATION_CLASSES (JWT, session).
    permission_classes = [permissions.IsAuthenticated, CanViewDecision]

    def get(self, request: Request, session_id: str) -> Response:
        reject_unstorable_session_id(session_id)
        session = get_object_or_404(
            VerificationSession.objects.defer("decision"), session_id=session_id
        )
        decision = read_decision(session, request, via="api")
        return Response(
            {
                "session_id": session.session_id,
                "status": session.status,
                "decision_updated_at": session.decision_updated_at,
                "decision": decision,
            }
        )
