"""``POST /didit/webhook/``: the endpoint Didit calls. The logic lives in ``intake``.

Answers (CONTRACT.md): 200 accepted (duplicates and stale deliveries
included), 400 a genuine body that is not a status change, 401 signature or
timestamp missing, invalid or stale (also for an unsigned body that is not
JSON: an unsigned caller learns nothing about parsing), 405 other methods,
413 body over ``WEBHOOK_MAX_BODY_BYTES``, 500 a server fault (Didit retries),
503 an X-Signature-Simple delivery whose decision could not be fetched.

Caveat: the limit is enforced on what Django hands the view. An ASGI server
(and Django's ASGI handler) receives the whole request body before the view
runs; cap the body at your proxy too (nginx ``client_max_body_size``).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..conf import didit_settings
from . import intake

logger = logging.getLogger("didit_channels.webhooks")


def incoming_from_request(request: HttpRequest) -> intake.Incoming:
    """Read the request into an ``Incoming``, never more than the size limit + 1 bytes."""
    limit = int(didit_settings.WEBHOOK_MAX_BODY_BYTES)
    body, size = intake.read_limited(request, request.META.get("CONTENT_LENGTH"), limit)
    return intake.Incoming(
        body=body,
        body_size=size,
        headers=request.headers,
        remote_addr=request.META.get("REMOTE_ADDR"),
    )


# Exempt from CSRF: Didit authenticates with a signature, not a cookie.
# Exempt from ATOMIC_REQUESTS: a delivery whose apply fails must still be
# recorded (marked "error" for didit_reprocess), and the intake does that
# after rolling its own transaction back; one request-wide transaction would
# roll the record back with the failure.
@csrf_exempt
@transaction.non_atomic_requests
def webhook(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        result = intake.receive(incoming_from_request(request))
    except DatabaseError:
        logger.exception("Webhook could not be recorded: database unavailable; answering 500.")
        return JsonResponse({"outcome": "error"}, status=500)
    return JsonResponse(result.as_json(), status=result.status)
