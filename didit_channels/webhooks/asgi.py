"""The webhook served straight from ASGI, ahead of Django's request handler.

Why: a webhook needs none of a site's middleware (no session, no CSRF, no
user), yet Django runs every sync middleware of the stack in a thread hop,
twice per request. Profiled under load, that machinery cost more than the
webhook's own work. ``WebhookFastPath`` wraps the site's HTTP application and
answers requests for the webhook's URL itself: it reads the body (never more
than the size limit + 1 bytes), then runs ``intake.receive`` — the very same
steps the Django view runs — in one worker-thread hop. Every other request
goes to the wrapped application unchanged.

Use it in ``asgi.py`` (``didit_channels.routing.http_application`` does it
for you)::

    application = ProtocolTypeRouter({
        "http": http_application(get_asgi_application()),
        "websocket": websocket_application(),
    })

Without it the Django view at the same URL serves the webhook, with the same
answers. Caveat: being ahead of Django, the fast path skips your middleware;
anything a middleware of yours must see of webhook traffic (access logging,
say) belongs at the ASGI server or proxy instead.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections
from django.http.request import HttpHeaders
from django.urls import NoReverseMatch, reverse

from ..conf import didit_settings
from ..live.groups import apublish_status, deferred_publications
from . import intake

logger = logging.getLogger("didit_channels.webhooks")

UNRESOLVED = object()


def _meta_from_scope(scope: dict[str, Any]) -> dict[str, str]:
    """Request headers in ``request.META`` form, so ``HttpHeaders`` can read them."""
    meta: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name not in HttpHeaders.UNPREFIXED_HEADERS:
            name = "HTTP_" + name
        value = raw_value.decode("latin-1")
        meta[name] = f"{meta[name]},{value}" if name in meta else value
    return meta


async def _read_limited(receive: Any, limit: int) -> tuple[bytes | None, int] | None:
    """``(body, size)`` holding at most ``limit`` + 1 bytes; None if the client left."""
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


Publication = tuple[dict[str, Any], "int | None"]


def _receive_in_worker(incoming: intake.Incoming) -> tuple[int, dict[str, Any], list[Publication]]:
    # What Django's request_started/request_finished would do around a view.
    close_old_connections()
    try:
        with deferred_publications() as committed:
            result = intake.receive(incoming)
        return result.status, result.as_json(), committed
    except DatabaseError:
        logger.exception("Webhook could not be recorded: database unavailable; answering 500.")
        return 500, {"outcome": "error"}, []
    finally:
        close_old_connections()


async def _answer(send: Any, status: int, payload: dict[str, Any], extra=()) -> None:
    body = json.dumps(payload).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def webhook_endpoint(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The webhook as a bare ASGI HTTP application (same answers as the Django view)."""
    if scope.get("method") != "POST":
        await _answer(send, 405, {"detail": "Method not allowed."}, [(b"allow", b"POST")])
        return
    meta = _meta_from_scope(scope)
    limit = int(didit_settings.WEBHOOK_MAX_BODY_BYTES)
    declared = intake.declared_length(meta.get("CONTENT_LENGTH"))
    if declared is not None and declared > limit:
        body, size = None, min(declared, intake.MAX_BODY_SIZE_FIELD)
    else:
        read = await _read_limited(receive, limit)
        if read is None:
            return
        body, size = read
    client = scope.get("client")
    incoming = intake.Incoming(
        body=body,
        body_size=size,
        headers=HttpHeaders(meta),
        remote_addr=str(client[0]) if client else None,
    )
    # Not thread-sensitive: each webhook is self-contained, and a burst must
    # not queue behind the one thread Django's sync views share.
    status, payload, committed = await sync_to_async(_receive_in_worker, thread_sensitive=False)(
        incoming
    )
    # Published from the loop, after commit, before answering: Didit's 200
    # means the change is stored and on its way.
    for frame, prev_id in committed:
        await apublish_status(frame, prev_id)
    await _answer(send, status, payload)


class WebhookFastPath:
    """Serve the webhook's URL from ``webhook_endpoint``; pass everything else to ``inner``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._path: Any = UNRESOLVED

    def webhook_path(self) -> str | None:
        if self._path is UNRESOLVED:
            try:
                self._path = reverse("didit_channels:webhook")
            except NoReverseMatch:
                # The site did not include didit_channels.urls: nothing to serve.
                self._path = None
        return self._path

    def matches(self, scope: dict[str, Any]) -> bool:
        if scope.get("type") != "http":
            return False
        target = self.webhook_path()
        if target is None:
            return False
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return path == target

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.matches(scope):
            await webhook_endpoint(scope, receive, send)
        else:
            await self.inner(scope, receive, send)
