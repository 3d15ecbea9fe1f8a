"""The ticket API for API clients, served ahead of Django's middleware (``fastpath``).

A native or server-side client asking for a socket ticket with a bearer
token needs none of a browser's middleware, yet behind a typical stack it
paid for all of it: profiled, the ticket request cost more than the socket
handshake it was for. ``ticket_endpoint`` takes a ``POST`` that carries an
``Authorization`` header and neither a ``Cookie`` nor an ``Origin`` header,
and runs the ticket view itself — the same DRF view, with the site's
authentication, permission and throttle classes, answering the same 201,
401, 403 or 429 — in one worker-thread hop, without the middleware around
it. Anything else (browsers, cookie sessions, other methods) is passed to
Django untouched.
"""

from __future__ import annotations

import functools
import io
import logging
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest
from django.utils.log import log_response

from ..fastpath import answer_json, read_limited
from ..workers import in_worker

logger = logging.getLogger("didit_channels.api")

# A ticket request has no body; anything bigger than this is not one.
MAX_BODY_BYTES = 16 * 1024


def is_api_client(request: HttpRequest) -> bool:
    """A request with credentials in ``Authorization`` that no browser context sent."""
    headers = request.headers
    return (
        request.method == "POST"
        and bool(headers.get("Authorization"))
        and "Cookie" not in headers
        and "Origin" not in headers
    )


@functools.cache
def _ticket_view() -> Any:
    from .tickets import TicketCreateView

    return TicketCreateView.as_view()


@in_worker
def _respond(scope: dict[str, Any], body: bytes) -> Any:
    request = ASGIRequest(scope, io.BytesIO(body))
    try:
        response = _ticket_view()(request)
        if callable(getattr(response, "render", None)):
            response = response.render()
    except Exception:
        logger.exception("The ticket view failed.")
        return None
    if response.status_code >= 400:
        # What Django's handler logs for it ("Unauthorized: /didit/api/tickets/").
        log_response(
            "%s: %s", response.reason_phrase, request.path, response=response, request=request
        )
    return response


async def ticket_endpoint(
    scope: dict[str, Any], receive: Any, send: Any, request: HttpRequest
) -> bool:
    if not is_api_client(request):
        return False
    read = await read_limited(receive, MAX_BODY_BYTES)
    if read is None:
        return True  # the client left
    body, _size = read
    if body is None:
        await answer_json(send, 413, {"detail": "Request body too large."})
        return True
    response = await _respond(scope, body)
    if response is None:
        await answer_json(send, 500, {"detail": "Server error."})
        return True
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
    if not response.has_header("X-Content-Type-Options"):
        headers.append((b"x-content-type-options", b"nosniff"))
    for cookie in response.cookies.values():
        headers.append((b"set-cookie", cookie.output(header="").strip().encode("ascii")))
    content = response.content
    response.close()
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": content})
    return True
