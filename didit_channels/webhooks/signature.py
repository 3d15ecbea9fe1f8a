"""Didit webhook signatures. Pure functions: no Django, no I/O.

Three headers may carry an HMAC-SHA256 (lowercase hex) keyed with a webhook
secret:

* ``X-Signature-V2``: over the canonical JSON of the parsed body (integral
  floats become ints, recursively; keys sorted; compact separators; UTF-8,
  non-ASCII kept). It survives proxies that re-serialise the JSON.
* ``X-Signature``: over the raw request body bytes.
* ``X-Signature-Simple``: over the envelope only (see ``simple_message``);
  it does not cover the decision, so callers must not trust the body with it.

``X-Timestamp`` (Unix seconds, ASCII digits) must be within the tolerance of
now, in either direction. Every configured secret is tried (rotation), and
every comparison is constant-time.

Caveats: ``verify`` judges authenticity and freshness only; a fresh, valid
request can still be a replay inside the tolerance window, so callers must
deduplicate. A ``"simple"`` verdict vouches for the four envelope fields and
nothing else in the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_TOLERANCE_SECONDS = 300


def normalize_floats(value: Any) -> Any:
    """Integral floats become ints (97.0 -> 97), recursively through dicts and lists."""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: normalize_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize_floats(item) for item in value]
    return value


def canonical_json(payload: Any) -> bytes:
    """The bytes X-Signature-V2 is computed over."""
    return json.dumps(
        normalize_floats(payload),
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def simple_message(payload: Mapping[str, Any]) -> bytes:
    """The envelope X-Signature-Simple covers: ``timestamp:session_id:status:webhook_type``.

    The four body fields as text, joined by colons (Didit's published format;
    a missing field counts as empty).
    """
    parts = [payload.get(key, "") for key in ("timestamp", "session_id", "status", "webhook_type")]
    return ":".join("" if part is None else str(part) for part in parts).encode("utf-8")


def sign(secret: str | bytes, message: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` keyed with ``secret`` (UTF-8 when text)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _matches_any(secrets: Iterable[str | bytes], message: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    presented = signature.strip().lower().encode("ascii", "replace")
    matched = False
    # Every secret is tried (no early exit) so timing does not tell which one matched.
    for secret in secrets:
        matched |= hmac.compare_digest(sign(secret, message).encode("ascii"), presented)
    return matched


# ASCII digits only: int() would also accept " +1_700_000_000" or non-ASCII
# digits ("١٧٠٠..."), none of which Didit sends.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def parse_timestamp(timestamp: str | None) -> int | None:
    """X-Timestamp as an int, or None when absent or not plain ASCII digits."""
    if not isinstance(timestamp, str):
        return None
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        return None
    return int(timestamp)


def timestamp_is_fresh(
    timestamp: str | None, now: float, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> bool:
    value = parse_timestamp(timestamp)
    return value is not None and abs(now - value) <= tolerance


@dataclass(frozen=True)
class Verdict:
    valid: bool
    scheme: str | None  # "v2", "raw", "simple" or None
    reason: str  # safe to log: never contains a secret or a signature

    def __bool__(self) -> bool:
        return self.valid


def verify(
    *,
    secrets: Iterable[str | bytes],
    raw_body: bytes,
    payload: Any,
    signature_v2: str | None,
    signature_raw: str | None,
    signature_simple: str | None = None,
    timestamp: str | None,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    allow_simple: bool = False,
) -> Verdict:
    """Decide whether a webhook request is authentic and fresh.

    ``payload`` is the parsed body (or None when it did not parse; then only
    the raw-body signature can hold). Either X-Signature-V2 or X-Signature is
    enough. X-Signature-Simple counts only with ``allow_simple`` and only when
    neither of the others holds; its verdict has ``scheme == "simple"`` and the
    caller must not trust anything in the body beyond the envelope.
    """
    secrets = [secret for secret in secrets if secret]
    if not secrets:
        return Verdict(False, None, "no webhook secret configured")
    if not (signature_v2 or signature_raw or signature_simple):
        return Verdict(False, None, "no signature header")
    if not timestamp_is_fresh(timestamp, now, tolerance):
        return Verdict(False, None, "timestamp missing, malformed or outside the tolerance")
    if signature_v2 and payload is not None:
        try:
            canonical = canonical_json(payload)
        except (TypeError, ValueError, RecursionError):
            # Not JSON-serialisable, a lone surrogate (not UTF-8), or nested
            # too deep: nothing Didit could have signed.
            canonical = None
        if canonical is not None and _matches_any(secrets, canonical, signature_v2):
            return Verdict(True, "v2", "X-Signature-V2 valid")
    if signature_raw and _matches_any(secrets, raw_body, signature_raw):
        return Verdict(True, "raw", "X-Signature valid")
    if signature_simple and isinstance(payload, Mapping):
        if not allow_simple:
            return Verdict(False, None, "X-Signature-Simple is not enabled")
        try:
            envelope = simple_message(payload)
        except UnicodeEncodeError:
            envelope = None  # a lone surrogate: nothing Didit could have signed
        if envelope is not None and _matches_any(secrets, envelope, signature_simple):
            return Verdict(True, "simple", "X-Signature-Simple valid (envelope only)")
    return Verdict(False, None, "signature does not match any configured secret")
