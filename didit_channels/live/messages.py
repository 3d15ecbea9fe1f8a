"""The JSON frames the socket sends (CONTRACT.md, "Server -> client").

Pure shaping: no I/O. Frames carry status metadata only, never anything from
the decision (names, document numbers, dates of birth, images).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def json_pk(value: Any) -> Any:
    """A primary key as JSON and msgpack can carry it: ints stay ints, UUIDs etc. become strings."""
    if value is None or isinstance(value, int | str):
        return value
    return str(value)


def status_frame(event) -> dict[str, Any]:
    """A ``status`` frame for a StatusEvent (``session`` must be loaded or cached)."""
    return {
        "type": "status",
        "id": event.pk,
        "session_id": event.session.session_id,
        "status": event.status,
        "previous_status": event.previous_status,
        "webhook_type": event.webhook_type,
        "occurred_at": _iso(event.occurred_at),
        "user": json_pk(event.user_id),
    }


def snapshot_entry(session_id: str, status: str, updated_at: datetime | None) -> dict[str, Any]:
    return {"session_id": session_id, "status": status, "updated_at": _iso(updated_at)}


def hello_frame(user_pk: Any, audiences: list[str], cursor: int) -> dict[str, Any]:
    return {"type": "hello", "user": json_pk(user_pk), "audiences": audiences, "cursor": cursor}


def error_frame(code: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail}
