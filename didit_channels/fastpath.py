"""The app's HTTP endpoints served straight from ASGI, ahead of Django's request handler.

Why: Django runs every sync middleware of a site's stack in a thread hop,
twice per request; profiled under load, that machinery cost more than the
webhook's own work, and more than a ticket's. Two endpoints need none of a
browser's middleware:

* the webhook (``webhooks.asgi``): always. No session, no CSRF, no user;
  the same ``intake.receive`` the Django view runs, in one worker hop.
* the ticket API (``api.asgi``), for API clients only: a request that
  carries an ``Authorization`` header and neither a ``Cookie`` nor an
  ``Origin`` header (browsers send ``Origin`` with every POST) runs the very
  same DRF view, with the site's authentication, permission and throttle
  classes, without the middleware around it. Browsers — cookie sessions,
  CSRF, CORS — always go through Django.

``FastPaths`` wraps the site's HTTP application and answers those requests
itself (after checking the ``Host`` header against ``ALLOWED_HOSTS``, as
Django would: 400 otherwise); every other request goes to the wrapped
application unchanged.
``didit_channels.routing.http_application`` does the wrapping::

    application = ProtocolTypeRouter({
        "http": http_application(get_asgi_application()),
        "websocket": websocket_application(),
    })

Without it the Django views at the same URLs answer, the same way. Caveats:
being ahead of Django, the fast path skips your middleware; anything a
middleware of yours must see of webhook or API-client ticket traffic (access
logging, say) belongs at the ASGI server or proxy instead. And the ticket
view runs without middleware for API clients, so its authentication classes
must not need one (JWT, token and basic authentication do not);
``http_application(app, api_tickets=False)`` turns that part off.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

# Django's own logger for this, so a site's alerting on it covers the fast path.
host_logger = logging.getLogger("django.security.DisallowedHost")

# (scope, receive, send, request) -> True when answered; False (before reading
# anything) to pass. ``request``: the request's headers as Django reads them
# (an ``ASGIRequest`` without its body, which the endpoint reads itself).
Endpoint = Callable[[dict, Any, Any, HttpRequest], Awaitable[bool]]


def strip_root(scope: dict[str, Any]) -> str:
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


async def read_limited(receive: Any, limit: int) -> tuple[bytes | None, int] | None:
    """``(body, size)`` holding at most ``limit`` + 1 bytes; None if the client left.

    ``body`` is None when the body was larger than ``limit`` (``size`` then
    counts what was read, never more than ``limit`` + 1 per chunk kept).
    """
    chunks: list[bytes] = []
    kept = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if kept <= limit:
            chunk = chunk[: limit + 1 - kept]
            chunks.append(chunk)
            kept += len(chunk)
        if not message.get("more_body"):
            break
    if kept > limit:
        return None, kept
    return b"".join(chunks), kept


async def answer_json(send: Any, status: int, payload: dict[str, Any], extra=()) -> None:
    body = json.dumps(payload).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"x-content-type-options", b"nosniff"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def host_allowed(request: HttpRequest) -> bool:
    """``ALLOWED_HOSTS`` checked as Django checks it (``HttpRequest.get_host``)."""
    try:
        request.get_host()
    except DisallowedHost as refusal:
        host_logger.error("%s", refusal)  # the level Django logs it at
        return False
    return True


_UNRESOLVED = object()


class FastPaths:
    """Serve the app's fast-path URLs (see the module doc); pass everything else to ``inner``."""

    def __init__(self, inner: Any, *, api_tickets: bool = True) -> None:
        self.inner = inner
        self.api_tickets = api_tickets
        self._routes: Any = _UNRESOLVED

    def routes(self) -> dict[str, Endpoint]:
        """URL path -> endpoint, resolved on first use (URLconf loaded by then)."""
        if self._routes is _UNRESOLVED:
            from .api.asgi import ticket_endpoint
            from .webhooks.asgi import webhook_endpoint

            routes: dict[str, Endpoint] = {}
            served = [("didit_channels:webhook", webhook_endpoint)]
            if self.api_tickets:
                served.append(("didit_channels:ticket-create", ticket_endpoint))
            for name, endpoint in served:
                try:
                    routes[reverse(name)] = endpoint
                except NoReverseMatch:
                    pass  # the site did not include didit_channels.urls
            self._routes = routes
        return self._routes

    def endpoint_for(self, scope: dict[str, Any]) -> Endpoint | None:
        if scope.get("type") != "http":
            return None
        return self.routes().get(strip_root(scope))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        endpoint = self.endpoint_for(scope)
        if endpoint is None:
            await self.inner(scope, receive, send)
            return
        request = ASGIRequest(scope, io.BytesIO())
        # What CommonMiddleware would refuse (the Host header) is refused here too.
        if not host_allowed(request):
            await answer_json(send, 400, {"detail": "Bad Request"})
            return
        if not await endpoint(scope, receive, send, request):
            await self.inner(scope, receive, send)
