"""``POST <prefix>/api/tickets/``: a one-time ticket for opening the live socket.

Authenticated by the project's DRF authentication classes (the demo site:
JWT Bearer, or the Django session with its CSRF token). Responses: ``201``
``{"ticket", "expires_in", "url"}``; ``401``/``403`` unauthenticated, missing
CSRF token or inactive user; ``429`` beyond ``TICKET_THROTTLE_RATE`` per user;
``405`` for other methods. Never cached: the body is a credential.

The throttle counts in Django's cache: with several server processes, give
them a shared cache (Redis, Memcached) or each counts on its own.
"""

from __future__ import annotations

from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from ..conf import didit_settings
from ..live import tickets
from ..live.logout import login_session_key
from ..routing import SOCKET_PATH
from .schema import AutoSchema, TicketSerializer, errors


class TicketThrottle(UserRateThrottle):
    """Per-user rate of ticket requests, from ``DIDIT_CHANNELS["TICKET_THROTTLE_RATE"]``."""

    scope = "didit_tickets"

    def get_rate(self) -> str | None:
        return didit_settings.TICKET_THROTTLE_RATE


class IsActiveUser(permissions.BasePermission):
    message = "Tickets are issued to signed-in, active users only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "is_active", True))


@extend_schema(
    summary="Issue a one-time ticket for the live socket",
    request=None,
    responses={
        201: OpenApiResponse(TicketSerializer, description="A ticket for /ws/didit/."),
        **errors(401, 403, 429),
    },
)
@method_decorator(never_cache, name="dispatch")
class TicketCreateView(APIView):
    schema = AutoSchema()  # see didit_channels.api.schema
    permission_classes = [IsActiveUser]
    throttle_classes = [TicketThrottle]

    def post(self, request: Request) -> Response:
        issued = tickets.issue(
            request.user,
            client_ip=request.META.get("REMOTE_ADDR"),
            login_session=login_session_key(request, request.user),
        )
        return Response(
            {"ticket": issued.ticket, "expires_in": issued.expires_in, "url": SOCKET_PATH},
            status=status.HTTP_201_CREATED,
        )
