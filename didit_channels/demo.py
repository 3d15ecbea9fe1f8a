"""The "Simulate Didit" control: signed webhooks through the real webhook endpoint, for demos.

Only with ``DEBUG`` on (404 otherwise), for a signed-in user, with CSRF. The
view signs a Didit-shaped payload with the configured webhook secret and
POSTs it to this same server's ``/didit/webhook/``, so everything after that
(signature check, state, history, sockets) is the production path. The
secret never leaves the server.

A user may only simulate changes to their own sessions; without a session id
a new demo session is started, owned by the caller (``vendor_data`` is their
primary key, as for sessions the app creates).

Caveat: this is an async view on purpose. Under ASGI, Django runs sync views
in one shared thread, so a sync view waiting on an HTTP request to a sync
view of the same server would wait for itself forever.
"""

from __future__ import annotations

import logging
import uuid

import httpx
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from .conf import didit_settings
from .models import VerificationSession
from .statuses import KNOWN_STATUSES
from .testing import signed_webhook, status_payload

logger = logging.getLogger("didit_channels.demo")

WEBHOOK_TIMEOUT_SECONDS = 10.0


def _webhook_url(request: HttpRequest) -> str:
    """This server's webhook URL, addressed to the socket the request came in on.

    Going to the listening socket rather than to whatever the Host header
    names keeps the request on this process, and past any TLS proxy in front.
    """
    path = reverse("didit_channels:webhook")
    scope = getattr(request, "scope", None) or {}
    server = scope.get("server")
    if server and server[1]:
        host = str(server[0])
        if ":" in host:
            host = f"[{host}]"
        return f"{scope.get('scheme', 'http')}://{host}:{server[1]}{path}"
    return request.build_absolute_uri(path)


def _answer(request: HttpRequest, body: dict, status: int) -> HttpResponse:
    # Forms posted without JavaScript go back to the status page.
    if "application/json" not in request.headers.get("Accept", ""):
        return redirect("didit_channels:status")
    return JsonResponse(body, status=status)


@require_POST
async def simulate(request: HttpRequest) -> HttpResponse:
    """POST ``status`` and optionally ``session_id``: send Didit's webhook for that change."""
    if not settings.DEBUG:
        raise Http404("Simulating Didit is available only with DEBUG on.")
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())

    status = request.POST.get("status", "")
    if status not in KNOWN_STATUSES:
        return _answer(request, {"detail": "Choose one of Didit's statuses."}, 400)
    session_id = request.POST.get("session_id", "").strip()
    if session_id:
        owned = VerificationSession.objects.filter(session_id=session_id, user=user)
        if not await owned.aexists():
            # The same answer for "not yours" and "does not exist".
            return _answer(request, {"detail": "No such session of yours."}, 404)
    else:
        session_id = f"demo-{uuid.uuid4().hex[:12]}"

    secrets = didit_settings.WEBHOOK_SECRETS
    if not secrets:
        return _answer(
            request,
            {"detail": "No webhook secret is configured: set DIDIT_WEBHOOK_SECRET."},
            503,
        )
    payload = status_payload(
        session_id, status, vendor_data=str(user.pk), event_id=f"demo-{uuid.uuid4().hex}"
    )
    body, headers = signed_webhook(payload, secrets[0])
    headers["Content-Type"] = "application/json"
    headers["Host"] = request.get_host()
    try:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
            response = await client.post(_webhook_url(request), content=body, headers=headers)
    except httpx.HTTPError as exc:
        logger.warning("Simulated webhook could not be delivered (%s).", type(exc).__name__)
        return _answer(request, {"detail": "The webhook endpoint could not be reached."}, 502)
    answer = {
        "session_id": session_id,
        "status": status,
        "webhook_status": response.status_code,
    }
    if response.status_code != 200:
        answer["detail"] = f"The webhook endpoint answered {response.status_code}."
        return _answer(request, answer, 502)
    return _answer(request, answer, 200)
