"""Helpers for testing a site that uses didit_channels (and for this app's own tests).

``signed_webhook(payload, secret)`` returns the body and headers Didit would
send, so a test can post a genuine webhook to ``/didit/webhook/``::

    body, headers = signed_webhook({"session_id": "s1", "status": "Approved"}, "secret")
    client.post("/didit/webhook/", body, content_type="application/json", headers=headers)
"""

from __future__ import annotations

import json
import time
from typing import Any

from .webhooks.signature import canonical_json, sign, simple_message


def signed_webhook(
    payload: dict[str, Any],
    secret: str,
    *,
    timestamp: int | None = None,
    schemes: tuple[str, ...] = ("v2", "raw"),
    body: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Serialise ``payload`` (or use ``body``) and sign it with the given schemes.

    ``schemes`` picks the headers: "v2" (X-Signature-V2), "raw" (X-Signature),
    "simple" (X-Signature-Simple).
    """
    if body is None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"X-Timestamp": stamp}
    if "v2" in schemes:
        headers["X-Signature-V2"] = sign(secret, canonical_json(payload))
    if "raw" in schemes:
        headers["X-Signature"] = sign(secret, body)
    if "simple" in schemes:
        headers["X-Signature-Simple"] = sign(secret, simple_message(payload))
    return body, headers


def status_payload(
    session_id: str,
    status: str,
    *,
    vendor_data: str | None = None,
    webhook_type: str = "status.updated",
    timestamp: int | None = None,
    event_id: str | None = None,
    decision: dict[str, Any] | None = None,
    workflow_id: str = "wf-demo",
) -> dict[str, Any]:
    """A webhook body shaped like Didit's ``status.updated`` notification."""
    now = int(time.time()) if timestamp is None else timestamp
    payload: dict[str, Any] = {
        "session_id": session_id,
        "status": status,
        "webhook_type": webhook_type,
        "workflow_id": workflow_id,
        "timestamp": now,
        "created_at": now,
    }
    if vendor_data is not None:
        payload["vendor_data"] = vendor_data
    if event_id is not None:
        payload["event_id"] = event_id
    if decision is not None:
        payload["decision"] = decision
    return payload
