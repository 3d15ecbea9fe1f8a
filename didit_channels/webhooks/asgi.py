"""The webhook served straight from ASGI, ahead of Django's request handler.

A webhook needs none of a site's middleware (no session, no CSRF, no user).
``webhook_endpoint`` reads the body (never more than the size limit + 1
bytes), then runs ``intake.receive`` — the very same steps the Django view
runs — in one worker-thread hop, and publishes what was committed from the
event loop. ``didit_channels.fastpath.FastPaths`` routes the webhook's URL
here (see there for how to enable it, and the caveat about middleware).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest

from ..conf import didit_settings
from ..fastpath import answer_json, read_limited
from ..live.groups import Prev, apublish_status, deferred_publications
from ..workers import in_worker
from . import intake

logger = logging.getLogger("didit_channels.webhooks")


Publication = tuple[dict[str, Any], "Prev | None"]


@in_worker
def _receive_in_worker(incoming: intake.Incoming) -> tuple[int, dict[str, Any], list[Publication]]:
    try:
        with deferred_publications() as committed:
            result = intake.receive(incoming)
        return result.status, result.as_json(), committed
    except DatabaseError:
        logger.exception("Webhook could not be recorded: database unavailable; answering 500.")
        return 500, {"outcome": "error"}, []


async def webhook_endpoint(
    scope: dict[str, Any], receive: Any, send: Any, request: HttpRequest
) -> bool:
    """The webhook as a bare ASGI HTTP endpoint (same answers as the Django view)."""
    if request.method != "POST":
        await answer_json(send, 405, {"detail": "Method not allowed."}, [(b"allow", b"POST")])
        return True
    limit = int(didit_settings.WEBHOOK_MAX_BODY_BYTES)
    declared = intake.declared_length(request.META.get("CONTENT_LENGTH"))
    if declared is not None and declared > limit:
        body, size = None, min(declared, intake.MAX_BODY_SIZE_FIELD)
    else:
        read = await read_limited(receive, limit)
        if read is None:
            return True
        body, size = read
    client = scope.get("client")
    incoming = intake.Incoming(
        body=body,
        body_size=size,
        headers=request.headers,
        remote_addr=str(client[0]) if client else None,
    )
    # In a worker thread (didit_channels.workers): a burst must not queue
    # behind the one thread Django's sync views share.
    status, payload, committed = await _receive_in_worker(incoming)
    # Published from the loop, after commit, before answering: Didit's 200
    # means the change is stored and on its way.
    for frame, prev in committed:
        await apublish_status(frame, prev)
    await answer_json(send, status, payload)
    return True
