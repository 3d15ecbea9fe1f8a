"""Webhook intake: judge the request, record it, hand the change to ``state``.

The order is the point (CONTRACT.md, "Didit webhook intake"):

1. **Size.** A declared ``Content-Length`` over ``WEBHOOK_MAX_BODY_BYTES`` is
   refused (413) without reading the body; otherwise at most limit + 1 bytes
   are read, and a body that reaches limit + 1 is refused the same way.
2. **Parse and verify** (``assess``: pure, no database). ``signature.verify``
   decides. A request without a valid signature gets 401 even when its body
   is not JSON: an unsigned caller learns nothing about what we would have
   parsed.
3. **Validate.** A genuine request whose body is not a JSON object with
   string ``session_id`` and ``status`` gets 400.
4. **Record and apply**, in one transaction: every request, refused or not,
   leaves a ``WebhookDelivery`` row (raw body encrypted, remote address, a
   few safe headers, and only *whether* each signature header was present,
   never its value) carrying its outcome; a genuine one also goes through
   ``state.apply_status_change``, which dedupes, drops stale changes, updates
   the session, appends history, signals, and publishes after commit. On
   PostgreSQL a genuine delivery is recorded and applied by one database
   function call (``state_postgres``), the same steps. Duplicates and stale
   deliveries answer 200: Didit must stop retrying them.

A database fault while applying answers 500 (so Didit retries): the
transaction is rolled back and the delivery recorded afresh, marked
``error``; ``manage.py didit_reprocess`` re-applies such rows.

Nothing here touches ``HttpRequest``: the view (``webhooks.views``) reads the
request into an ``Incoming`` and turns the ``Result`` into a response, so the
same steps can serve another transport (the ASGI fast path, a queue worker).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, BinaryIO

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import state, state_postgres
from ..conf import didit_settings
from ..models import WebhookDelivery
from ..models.deliveries import DeliveryOutcome
from ..signals import webhook_received
from ..workers import serialized_writes
from . import signature

logger = logging.getLogger("didit_channels.webhooks")

SIGNATURE_HEADERS = ("X-Signature-V2", "X-Signature", "X-Signature-Simple")
# Headers copied into the delivery log (values truncated). Nothing secret:
# signature values are left out on purpose, only their presence is kept.
LOGGED_HEADERS = (
    "Content-Type",
    "Content-Length",
    "User-Agent",
    "X-Timestamp",
    "X-Forwarded-For",
    "X-Request-Id",
)
MAX_LOGGED_HEADER_CHARS = 256
# Didit's payloads nest a handful of levels. Far deeper nesting is refused as
# malformed before it can exhaust the interpreter's recursion limit anywhere
# downstream (canonical JSON, encryption of the decision).
MAX_JSON_DEPTH = 64
# An event_id longer than this is not used as the dedupe key (the key column
# holds 128 characters); the digest of the envelope is used instead.
MAX_EVENT_ID_CHARS = 100
# PositiveIntegerField's upper bound on every backend.
MAX_BODY_SIZE_FIELD = 2**31 - 1
DEFAULT_WEBHOOK_TYPE = "status.updated"


# --- the request, as the intake sees it --------------------------------------


@dataclass(frozen=True)
class Incoming:
    """One webhook request, read by the transport.

    ``body`` is None when the body is over the limit (then ``body_size`` is
    the declared length, or limit + 1 when none was declared).
    ``headers`` must look names up case-insensitively (``request.headers``).
    """

    body: bytes | None
    body_size: int
    headers: Mapping[str, str]
    remote_addr: str | None = None
    received_at: float | None = None  # Unix seconds; None means "now"

    @property
    def too_large(self) -> bool:
        return self.body is None


@dataclass(frozen=True)
class Result:
    """What the transport answers: an HTTP status and a small JSON body."""

    status: int
    outcome: str
    delivery_id: int | None = None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"outcome": self.outcome}
        if self.delivery_id is not None:
            body["delivery"] = self.delivery_id
        if self.detail:
            body["detail"] = self.detail
        return body


class Malformed(ValueError):
    """A genuine request whose body cannot be a status change (answered 400)."""


class DecisionUnavailable(Exception):
    """X-Signature-Simple was accepted but the decision could not be fetched."""


# --- reading ------------------------------------------------------------------


def declared_length(value: str | None) -> int | None:
    """``Content-Length`` as an int, or None when absent or not a plain number."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return int(value)


def read_limited(
    stream: BinaryIO, content_length: str | None, limit: int
) -> tuple[bytes | None, int]:
    """Read a body of at most ``limit`` bytes: ``(body, size)``, body None when over.

    A declared length over the limit is refused without reading a byte.
    Otherwise at most limit + 1 bytes are read, whatever is declared, so a
    missing or lying ``Content-Length`` cannot make us hold more than that.
    """
    declared = declared_length(content_length)
    if declared is not None and declared > limit:
        return None, min(declared, MAX_BODY_SIZE_FIELD)
    chunks: list[bytes] = []
    remaining = limit + 1
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    body = b"".join(chunks)
    if len(body) > limit:
        return None, len(body)
    return body, len(body)


# --- pure judgement -----------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_within(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return True


def parse_body(body: bytes) -> Any | None:
    """The body as JSON (strict UTF-8, no NaN/Infinity, bounded depth), else None.

    A body that is JSON ``null`` also gives None, i.e. counts as unparsed:
    only X-Signature (raw bytes) can vouch for it, and it is then refused with
    400 like any other body that is not an object.
    """
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not _depth_within(payload, MAX_JSON_DEPTH):
        return None
    return payload


def clean_text(value: Any, max_chars: int) -> str | None:
    """``value`` when it is a string the database will store as is, else None.

    Refused: non-strings, empty strings, NUL characters (PostgreSQL rejects
    them), lone surrogates (not UTF-8), and strings over ``max_chars``.
    """
    if not isinstance(value, str) or not value or len(value) > max_chars or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _as_datetime(value: Any, latest: float) -> datetime | None:
    """A Unix timestamp (number or digit string) or ISO 8601 string, not after ``latest``."""
    moment: datetime | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 12:
            value = int(text)
        else:
            try:
                moment = parse_datetime(text)
            except ValueError:
                return None
            if moment is not None and timezone.is_naive(moment):
                moment = timezone.make_aware(moment, UTC)
    if isinstance(value, int | float):
        try:
            moment = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if moment is None or moment.timestamp() < 0 or moment.timestamp() > latest:
        return None
    return moment


def occurred_at(
    payload: Mapping[str, Any], header_timestamp: str | None, now: float, tolerance: int
) -> datetime:
    """When the change happened, for ordering: the payload's ``timestamp``, else
    ``created_at``, else ``X-Timestamp``.

    A payload time further in the future than the signature tolerance is
    ignored (it would make every later webhook look stale).
    """
    latest = now + tolerance
    for key in ("timestamp", "created_at"):
        moment = _as_datetime(payload.get(key), latest)
        if moment is not None:
            return moment
    stamp = signature.parse_timestamp(header_timestamp)
    return datetime.fromtimestamp(stamp if stamp is not None else now, tz=UTC)


def build_change(
    payload: Any, *, header_timestamp: str | None, now: float, tolerance: int
) -> state.StatusChange:
    """The ``StatusChange`` a verified payload asks for; raises ``Malformed``.

    Only ``session_id``, ``status`` and a non-text ``webhook_type`` are
    grounds for refusal. Optional fields the database could not store as is
    (``vendor_data``, ``workflow_id``, an over-long ``event_id``) are dropped,
    not refused: a genuine status change is never lost over them.
    """
    if not isinstance(payload, dict):
        raise Malformed("the body is not a JSON object")
    session_id = clean_text(payload.get("session_id"), 128)
    if session_id is None:
        raise Malformed("session_id is missing or not a string of at most 128 characters")
    status = clean_text(payload.get("status"), 64)
    if status is None:
        raise Malformed("status is missing or not a string of at most 64 characters")
    webhook_type = payload.get("webhook_type")
    if webhook_type is None:
        webhook_type = DEFAULT_WEBHOOK_TYPE
    else:
        webhook_type = clean_text(webhook_type, 64)
        if webhook_type is None:
            raise Malformed("webhook_type is not a string of at most 64 characters")
    moment = occurred_at(payload, header_timestamp, now, tolerance)
    event_id = _event_id(payload.get("event_id"))
    decision = payload.get("decision")
    return state.StatusChange(
        session_id=session_id,
        status=status,
        occurred_at=moment,
        dedupe_key=state.derive_dedupe_key(
            event_id, session_id, status, webhook_type, moment.isoformat()
        ),
        webhook_type=webhook_type,
        source="webhook",
        workflow_id=clean_text(payload.get("workflow_id"), 128),
        vendor_data=_vendor_data(payload.get("vendor_data")),
        decision=decision if isinstance(decision, dict) else None,
        payload=payload,
    )


def _event_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return clean_text(value, MAX_EVENT_ID_CHARS)


def _vendor_data(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return clean_text(value, 255)


# --- X-Signature-Simple: the body is not trusted, the API is -----------------


def confirm_with_api(change: state.StatusChange) -> state.StatusChange:
    """Rebuild a Simple-signed change from the decision fetched from Didit.

    X-Signature-Simple covers only timestamp, session_id, status and
    webhook_type, so everything else in the body is ignored: the status,
    decision, vendor_data (which picks the owner) and workflow_id all come
    from ``GET /v3/session/<id>/decision/``. Raises ``DecisionUnavailable``.
    """
    from ..client import DiditClient  # the API client is needed only here

    try:
        decision = DiditClient.from_settings().get_decision(change.session_id)
    except Exception as exc:  # noqa: BLE001 - any failure means "not confirmed"
        raise DecisionUnavailable(type(exc).__name__) from exc
    status = clean_text(decision.get("status") if isinstance(decision, dict) else None, 64)
    if status is None:
        raise DecisionUnavailable("the fetched decision has no status")
    return replace(
        change,
        status=status,
        decision=decision,
        vendor_data=_vendor_data(decision.get("vendor_data")),
        workflow_id=clean_text(decision.get("workflow_id"), 128),
        payload=decision,
        # event_id is outside the signed envelope: not trusted as a key.
        dedupe_key=state.derive_dedupe_key(
            None, change.session_id, status, change.webhook_type, change.occurred_at.isoformat()
        ),
    )


def _simple_envelope(payload: dict[str, Any]) -> dict[str, Any]:
    """The only body fields a Simple signature vouches for."""
    return {key: payload.get(key) for key in ("session_id", "status", "webhook_type", "timestamp")}


# --- the delivery log ---------------------------------------------------------


def _remote_addr(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _logged_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    logged: dict[str, Any] = {}
    for name in LOGGED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        value = str(value)[:MAX_LOGGED_HEADER_CHARS]
        # jsonb refuses NUL; lone surrogates are not UTF-8.
        logged[name] = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    logged["signatures"] = {name: bool(headers.get(name)) for name in SIGNATURE_HEADERS}
    return logged


def unsaved_delivery(incoming: Incoming) -> WebhookDelivery:
    """The delivery row for ``incoming``, not yet saved: what is kept of the request."""
    return WebhookDelivery(
        remote_addr=_remote_addr(incoming.remote_addr),
        headers=_logged_headers(incoming.headers),
        raw_body=incoming.body,
        body_size=min(incoming.body_size, MAX_BODY_SIZE_FIELD),
    )


def record(incoming: Incoming) -> WebhookDelivery:
    """Write the delivery row (in ``receive``'s transaction)."""
    delivery = unsaved_delivery(incoming)
    delivery.save(force_insert=True)
    return delivery


def _finish(
    delivery: WebhookDelivery,
    outcome: str,
    *,
    signature_valid: bool | None = None,
    error: str = "",
    session_id: str = "",
    headers: dict[str, Any] | None = None,
) -> None:
    delivery.outcome = outcome
    delivery.signature_valid = signature_valid
    delivery.error = error[:2000]
    delivery.processed_at = timezone.now()
    fields = {
        "outcome": outcome,
        "signature_valid": signature_valid,
        "error": delivery.error,
        "processed_at": delivery.processed_at,
    }
    if session_id:
        delivery.session_id = fields["session_id"] = session_id
    if headers is not None:
        delivery.headers = fields["headers"] = headers
    with serialized_writes():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)


def _announce(delivery: WebhookDelivery) -> None:
    # Once the outcome is committed (at once outside a transaction).
    transaction.on_commit(partial(_send_announcement, delivery))


def _send_announcement(delivery: WebhookDelivery) -> None:
    # A failing receiver must not turn a judged delivery into a 500 (Didit
    # would retry something already settled).
    for receiver, response in webhook_received.send_robust(
        sender=WebhookDelivery, delivery=delivery, outcome=delivery.outcome
    ):
        if isinstance(response, Exception):
            logger.error(
                "webhook_received receiver %r failed for delivery %s",
                receiver,
                delivery.pk,
                exc_info=response,
            )


def _safe_session_id(payload: Any) -> str:
    if isinstance(payload, dict):
        return clean_text(payload.get("session_id"), 128) or ""
    return ""


# --- the whole intake ---------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """A request judged without the database: a refusal, or a change to apply.

    ``change`` is None for a refusal (``status``/``outcome``/``error`` say
    which); otherwise the request is genuine and well formed and ``change``
    is what it asks for (``simple``: vouched for by X-Signature-Simple only,
    so to be confirmed with Didit's API before it is applied).
    """

    status: int
    outcome: str
    change: state.StatusChange | None = None
    simple: bool = False
    signature_valid: bool | None = None
    error: str = ""
    session_id: str = ""
    event_id: str = ""


def assess(incoming: Incoming, now: float) -> Assessment:
    """Size, signature and body of a request, judged; pure (no database, no I/O)."""
    if incoming.too_large:
        return Assessment(413, DeliveryOutcome.TOO_LARGE)

    body = incoming.body or b""
    payload = parse_body(body)
    headers = incoming.headers
    tolerance = int(didit_settings.WEBHOOK_TOLERANCE_SECONDS)
    verdict = signature.verify(
        secrets=didit_settings.WEBHOOK_SECRETS,
        raw_body=body,
        payload=payload,
        signature_v2=headers.get("X-Signature-V2"),
        signature_raw=headers.get("X-Signature"),
        signature_simple=headers.get("X-Signature-Simple"),
        timestamp=headers.get("X-Timestamp"),
        now=now,
        tolerance=tolerance,
        allow_simple=bool(didit_settings.WEBHOOK_ALLOW_SIMPLE_SIGNATURE),
    )
    if not verdict:
        return Assessment(
            401, DeliveryOutcome.BAD_SIGNATURE, signature_valid=False, error=verdict.reason
        )

    simple = verdict.scheme == "simple"
    try:
        trusted = _simple_envelope(payload) if simple else payload
        change = build_change(
            trusted, header_timestamp=headers.get("X-Timestamp"), now=now, tolerance=tolerance
        )
    except Malformed as exc:
        return Assessment(
            400,
            DeliveryOutcome.MALFORMED,
            signature_valid=True,
            error=str(exc),
            session_id=_safe_session_id(payload),
        )
    return Assessment(
        200,
        DeliveryOutcome.RECEIVED,
        change=change,
        simple=simple,
        signature_valid=True,
        event_id=_event_id(payload.get("event_id")) or "",
    )


def receive(incoming: Incoming) -> Result:
    """Record, judge and apply one webhook request. Never raises for bad input.

    One transaction, one commit: the delivery row, its outcome and the change
    it brings (an apply that fails rolls the transaction back, and the
    delivery is recorded afresh, marked ``error``). On PostgreSQL a genuine
    delivery is recorded and applied in one round trip
    (``state_postgres``); elsewhere, and for refusals, through the ORM, and
    on SQLite this process's writers take turns (``workers.serialized_writes``).
    A delivery signed with ``X-Signature-Simple`` is committed first, then
    its decision is fetched from Didit outside any transaction, then applied.

    Raises ``DatabaseError`` only when the delivery cannot be recorded (the
    database is down): the transport answers 500 so Didit retries.
    """
    now = incoming.received_at if incoming.received_at is not None else time.time()
    assessed = assess(incoming, now)
    if assessed.change is not None and not assessed.simple and state_postgres.in_use():
        return _record_and_apply_in_one_trip(incoming, assessed)
    try:
        with serialized_writes(), transaction.atomic():
            delivery = record(incoming)
            settled = _settle(assessed, delivery)
    except _NotApplied as failure:
        return _record_failure(incoming, failure)
    if isinstance(settled, Result):
        return settled
    return _confirm_and_apply(settled, delivery, simple=True)


class _NotApplied(Exception):
    """The apply inside ``receive``'s transaction failed; that transaction is rolled back."""

    def __init__(self, change: state.StatusChange, message: str) -> None:
        super().__init__(message)
        self.change = change
        self.message = message


def _record_failure(incoming: Incoming, failure: _NotApplied) -> Result:
    """Record a delivery whose apply failed, afresh, marked ``error`` (for didit_reprocess)."""
    with serialized_writes(), transaction.atomic():
        delivery = record(incoming)
        _finish(
            delivery,
            DeliveryOutcome.ERROR,
            signature_valid=True,
            error=failure.message,
            session_id=failure.change.session_id,
        )
        _announce(delivery)
    logger.error(
        "Webhook delivery %s recorded as error: session %s was not changed.",
        delivery.pk,
        failure.change.session_id,
    )
    return Result(500, DeliveryOutcome.ERROR, delivery.pk)


def _record_and_apply_in_one_trip(incoming: Incoming, assessed: Assessment) -> Result:
    """PostgreSQL: the delivery row and the change it brings, in one function call."""
    change = assessed.change
    assert change is not None
    delivery = unsaved_delivery(incoming)
    delivery.signature_valid = True
    delivery.event_id = assessed.event_id
    try:
        applied = state_postgres.record_and_apply(delivery, change)
    except Exception as exc:
        _log_apply_failure(change)
        return _record_failure(incoming, _NotApplied(change, f"{type(exc).__name__}: {exc}"))
    return _applied(applied, change, delivery)


def _settle(assessed: Assessment, delivery: WebhookDelivery) -> Result | state.StatusChange:
    """Inside ``receive``'s transaction: the outcome of a recorded delivery, applying
    it unless it is Simple-signed (then the change to confirm with Didit's API,
    outside the transaction)."""
    change = assessed.change
    if change is None:
        return _refuse(assessed, delivery)
    delivery.signature_valid = True
    delivery.event_id = assessed.event_id
    if assessed.simple:
        # Kept so didit_reprocess knows to fetch the decision again.
        delivery.headers = {**delivery.headers, "verified_by": "simple"}
        WebhookDelivery.objects.filter(pk=delivery.pk).update(headers=delivery.headers)
        return change
    return apply(change, delivery, savepoint=False)


def _refuse(assessed: Assessment, delivery: WebhookDelivery) -> Result:
    _finish(
        delivery,
        assessed.outcome,
        signature_valid=assessed.signature_valid,
        error=assessed.error,
        session_id=assessed.session_id,
    )
    if assessed.status == 413:
        logger.warning(
            "Webhook delivery %s refused: body of %s bytes over the limit of %s.",
            delivery.pk,
            delivery.body_size,
            didit_settings.WEBHOOK_MAX_BODY_BYTES,
        )
    elif assessed.status == 401:
        logger.warning(
            "Webhook delivery %s refused (401) from %s: %s.",
            delivery.pk,
            delivery.remote_addr or "unknown address",
            assessed.error,
        )
    else:
        logger.warning("Webhook delivery %s refused (400): %s.", delivery.pk, assessed.error)
    _announce(delivery)
    detail = assessed.error if assessed.status == 400 else ""
    return Result(assessed.status, assessed.outcome, delivery.pk, detail=detail)


def _confirm_and_apply(
    change: state.StatusChange, delivery: WebhookDelivery, *, simple: bool
) -> Result:
    if simple:
        try:
            change = confirm_with_api(change)
        except DecisionUnavailable as exc:
            _finish(
                delivery,
                DeliveryOutcome.ERROR,
                signature_valid=True,
                error=f"decision fetch failed: {exc}",
                session_id=change.session_id,
            )
            logger.error(
                "Webhook delivery %s (X-Signature-Simple) not applied: the decision of "
                "session %s could not be fetched (%s); answering 503 so Didit retries.",
                delivery.pk,
                change.session_id,
                exc,
            )
            _announce(delivery)
            return Result(503, DeliveryOutcome.ERROR, delivery.pk)
    return apply(change, delivery)


def reprocess(delivery: WebhookDelivery) -> Result:
    """Judge and apply a recorded delivery again, trusting its stored signature verdict.

    For rows whose signature was valid but whose apply failed (``outcome ==
    "error"``). Signature values are never stored, so the earlier verdict is
    what vouches for the body; freshness is judged against ``received_at``.
    A Simple-signed delivery fetches its decision again.
    """
    if delivery.signature_valid is not True:
        raise ValueError(f"delivery {delivery.pk} was never verified; it cannot be reprocessed")
    payload = parse_body(delivery.raw_body or b"")
    simple = delivery.headers.get("verified_by") == "simple"
    trusted = _simple_envelope(payload) if simple and isinstance(payload, dict) else payload
    try:
        change = build_change(
            trusted,
            header_timestamp=delivery.headers.get("X-Timestamp"),
            now=delivery.received_at.timestamp(),
            tolerance=int(didit_settings.WEBHOOK_TOLERANCE_SECONDS),
        )
    except Malformed as exc:
        _finish(delivery, DeliveryOutcome.MALFORMED, signature_valid=True, error=str(exc))
        _announce(delivery)
        return Result(400, DeliveryOutcome.MALFORMED, delivery.pk, detail=str(exc))
    return _confirm_and_apply(change, delivery, simple=simple)


def apply(
    change: state.StatusChange, delivery: WebhookDelivery, *, savepoint: bool = True
) -> Result:
    """Hand a judged change to ``state``; a database fault gives 500 and an ``error`` row.

    ``savepoint=False`` (inside ``receive``'s transaction): a failure raises
    ``_NotApplied`` so ``receive`` rolls back and records the delivery afresh.
    """
    try:
        applied = state.apply_status_change(change, delivery=delivery, savepoint=savepoint)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        _log_apply_failure(change)
        if not savepoint:
            raise _NotApplied(change, message) from exc
        # Everything inside apply_status_change rolled back; only the mark is left.
        try:
            _finish(
                delivery,
                DeliveryOutcome.ERROR,
                signature_valid=delivery.signature_valid,
                error=message,
                session_id=change.session_id,
            )
        except DatabaseError:
            logger.error("Could not mark webhook delivery %s as failed.", delivery.pk)
        _announce(delivery)
        return Result(500, DeliveryOutcome.ERROR, delivery.pk)
    return _applied(applied, change, delivery)


def _log_apply_failure(change: state.StatusChange) -> None:
    logger.exception(
        "Webhook for session %s could not be applied; answering 500 so "
        "Didit retries (or run manage.py didit_reprocess).",
        change.session_id,
    )


def _applied(
    applied: state.Applied, change: state.StatusChange, delivery: WebhookDelivery
) -> Result:
    """The answer to a delivery ``state`` has settled (applied, duplicate or stale)."""
    outcome = delivery.outcome
    if applied.result is state.ApplyResult.APPLIED:
        logger.info(
            "Webhook delivery %s applied: session %s is now %r (event %s).",
            delivery.pk,
            change.session_id,
            change.status,
            applied.event.pk if applied.event else None,
        )
    else:
        logger.info(
            "Webhook delivery %s for session %s recorded as %s.",
            delivery.pk,
            change.session_id,
            outcome,
        )
    _announce(delivery)
    return Result(200, outcome, delivery.pk)
