"""A prototype measured by the benchmarks, not part of the app: the webhook off Django's stack.

The profile of ``POST /didit/webhook/`` under load (scripts/profile_hotpaths.py)
shows a large share of the server's time in Django's ASGI handler and in
``MiddlewareMixin.__acall__``: every sync middleware of the demo's stack runs
in a thread hop, twice per request, although the webhook needs none of them
(no session, no CSRF, no user). ``didit_channels.webhooks.intake`` is already
transport-agnostic, so this ASGI endpoint feeds it directly: read the body
(at most the limit + 1 bytes), then one worker-thread hop that records,
verifies, applies and (after commit) publishes, then the JSON answer.

Everything else is the demo's ASGI application. Serve with
``daphne bench.prototype_asgi:application``; the benchmarks use it when
``BENCH_APP_ASGI=bench.prototype_asgi:application``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_application = get_asgi_application()

# BENCH_PROTO_DB=pool: Django's PostgreSQL connection pool (psycopg_pool), the
# second prototype: no new database connection per request or handshake.
if os.environ.get("BENCH_PROTO_DB") == "pool":
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        settings.DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 4,
            "max_size": 20,
        }

from asgiref.sync import sync_to_async  # noqa: E402
from django.db import DatabaseError, close_old_connections  # noqa: E402
from django.http.request import HttpHeaders  # noqa: E402

from didit_channels.conf import didit_settings  # noqa: E402
from didit_channels.webhooks import intake  # noqa: E402
from project.asgi import application as demo_application  # noqa: E402

WEBHOOK_PATH = "/didit/webhook/"


def _receive_in_thread(incoming: intake.Incoming) -> tuple[int, dict[str, Any]]:
    close_old_connections()
    try:
        result = intake.receive(incoming)
        return result.status, result.as_json()
    except DatabaseError:
        return 500, {"outcome": "error"}
    finally:
        close_old_connections()


async def webhook_endpoint(scope: dict, receive: Any, send: Any) -> None:
    if scope["method"] != "POST":
        await _answer(send, 405, {"detail": "Method not allowed."}, [(b"allow", b"POST")])
        return
    meta = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in {"CONTENT_TYPE", "CONTENT_LENGTH"}:
            key = "HTTP_" + key
        meta[key] = value.decode("latin-1")
    limit = int(didit_settings.WEBHOOK_MAX_BODY_BYTES)
    declared = intake.declared_length(meta.get("CONTENT_LENGTH"))
    body: bytes | None = b""
    size = 0
    if declared is not None and declared > limit:
        body, size = None, declared
    else:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if size <= limit:
                chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)[: limit + 1]
        if size > limit:
            body = None
    client = scope.get("client")
    incoming = intake.Incoming(
        body=body,
        body_size=size,
        headers=HttpHeaders(meta),
        remote_addr=client[0] if client else None,
    )
    status, payload = await sync_to_async(_receive_in_thread, thread_sensitive=False)(incoming)
    await _answer(send, status, payload)


async def _answer(send: Any, status: int, payload: dict, extra: list | None = None) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


# BENCH_PROTO_DISPATCH=1: the socket consumer without Channels' per-message
# ``aclose_old_connections()``. Channels 4.2+ runs it before *every* handler,
# layer messages included: a hop to the one thread-sensitive worker thread per
# push per socket, so a fan-out to 1,000 sockets queues 1,000 hops behind each
# other. The consumer's own database calls already check connection age.
if os.environ.get("BENCH_PROTO_DISPATCH") == "1":
    from channels.consumer import get_handler_name

    from didit_channels.live.consumers import StatusConsumer

    async def _dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    StatusConsumer.dispatch = _dispatch

# BENCH_PROTO_WEBHOOK=0 keeps the webhook on Django's stack (to measure the pool alone).
FAST_WEBHOOK = os.environ.get("BENCH_PROTO_WEBHOOK", "1") != "0"


async def application(scope: dict, receive: Any, send: Any) -> None:
    if FAST_WEBHOOK and scope["type"] == "http" and scope["path"] == WEBHOOK_PATH:
        await webhook_endpoint(scope, receive, send)
        return
    await demo_application(scope, receive, send)
