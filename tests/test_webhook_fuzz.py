"""Hypothesis: whatever arrives, the webhook never answers 500, and nothing
without a valid, fresh signature changes a session.
"""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from didit_channels.models import StatusEvent, VerificationSession
from didit_channels.webhooks.signature import canonical_json, sign, simple_message

from .conftest import WEBHOOK_SECRET

URL = "/didit/webhook/"

pytestmark = pytest.mark.django_db

fuzz = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text including what databases and encoders trip over: NUL, lone
# surrogates, non-ASCII, long strings.
nasty_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0), max_size=20),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "José 日本 ✅", "x" * 300, "1" * 40]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(nasty_text, children, max_size=3)
    ),
    max_leaves=12,
)
now_ish = st.integers(0, 2**40).map(str) | st.just("now")
statuses = st.sampled_from(["Approved", "Declined", "In Review", "In Progress"]) | json_values
payloads = st.fixed_dictionaries(
    {},
    optional={
        "session_id": st.sampled_from(["s-1", "s-2"]) | json_values,
        "status": statuses,
        "webhook_type": st.sampled_from(["status.updated", "data.updated"]) | json_values,
        "event_id": json_values,
        "timestamp": st.integers(-(2**40), 2**40) | json_values,
        "created_at": st.sampled_from(["2024-05-01T10:00:00Z", "2024-13-45T99:99", "yesterday"])
        | json_values,
        "vendor_data": st.integers(-(2**70), 2**70).map(str) | json_values,
        "workflow_id": json_values,
        "decision": json_values,
        "metadata": json_values,
    },
)


def state_snapshot() -> tuple:
    return (
        tuple(VerificationSession.objects.order_by("pk").values_list("session_id", "status")),
        StatusEvent.objects.count(),
    )


def fresh(stamp: str) -> str:
    return str(int(time.time())) if stamp == "now" else stamp


@fuzz
@given(
    body=st.binary(max_size=300) | payloads.map(lambda p: json.dumps(p).encode()),
    headers=st.dictionaries(
        st.sampled_from(["X-Signature", "X-Signature-V2", "X-Signature-Simple", "X-Timestamp"]),
        st.text(max_size=70) | st.text("0123456789abcdef", min_size=64, max_size=64) | now_ish,
    ),
    allow_simple=st.booleans(),
)
def test_unsigned_or_forged_requests_never_change_state(settings, body, headers, allow_simple):
    settings.DIDIT_CHANNELS = {
        **settings.DIDIT_CHANNELS,
        "WEBHOOK_ALLOW_SIMPLE_SIGNATURE": allow_simple,
    }
    headers = {name: fresh(value) for name, value in headers.items()}
    before = state_snapshot()

    response = Client().post(URL, body, content_type="application/json", headers=headers)

    assert response.status_code == 401
    assert state_snapshot() == before


def signed_headers(payload, body: bytes, secret: str, stamp: int, schemes) -> dict[str, str]:
    headers = {"X-Timestamp": str(stamp)}
    if "v2" in schemes:
        try:
            headers["X-Signature-V2"] = sign(secret, canonical_json(payload))
        except (UnicodeEncodeError, RecursionError):
            pass  # lone surrogates: nothing Didit could sign over canonical JSON
    if "raw" in schemes:
        headers["X-Signature"] = sign(secret, body)
    if "simple" in schemes:
        try:
            headers["X-Signature-Simple"] = sign(secret, simple_message(payload))
        except UnicodeEncodeError:
            headers["X-Signature-Simple"] = "0" * 64
    return headers


@fuzz
@given(
    payload=payloads,
    forgery=st.sampled_from(["wrong secret", "stale", "future", "tampered", "simple off"]),
)
def test_signatures_that_are_almost_right_never_change_state(payload, forgery):
    now = int(time.time())
    secret = "a-different-secret" if forgery == "wrong secret" else WEBHOOK_SECRET
    # Just outside the 300 s window. "future" gets a margin: ``now`` is truncated
    # and time passes before the server looks, which brings a future stamp back
    # inside the window (a stale one only moves further out).
    stamp = {"stale": now - 301, "future": now + 310}.get(forgery, now)
    schemes = {"simple off": ("simple",), "tampered": ("raw",)}.get(forgery, ("v2", "raw"))
    body = json.dumps(payload).encode()  # ASCII-escaped: lone surrogates survive
    headers = signed_headers(payload, body, secret, stamp, schemes)
    if forgery == "tampered":
        body += b" "  # V2 would still hold over the same JSON: only the raw one is sent
    before = state_snapshot()

    response = Client().post(URL, body, content_type="application/json", headers=headers)

    assert response.status_code == 401
    assert state_snapshot() == before


@fuzz
@given(payload=payloads | json_values, scheme=st.sampled_from(["v2", "raw"]))
def test_genuine_but_odd_payloads_never_yield_500(payload, scheme):
    body = json.dumps(payload).encode()
    headers = signed_headers(payload, body, WEBHOOK_SECRET, int(time.time()), (scheme,))
    if payload is None or len(headers) == 1:
        # A JSON null counts as unparsed (only X-Signature can vouch for it), and
        # lone surrogates cannot be V2-signed: sign the raw bytes instead.
        headers = signed_headers(payload, body, WEBHOOK_SECRET, int(time.time()), ("raw",))
    events_before = StatusEvent.objects.count()

    response = Client().post(URL, body, content_type="application/json", headers=headers)

    assert response.status_code in (200, 400), response.content
    events_after = StatusEvent.objects.count()
    if response.status_code == 400:
        assert events_after == events_before
    else:
        assert events_after - events_before in (0, 1)


@fuzz
@given(payload=payloads)
def test_simple_signature_with_the_api_unreachable_never_changes_state(settings, payload):
    settings.DIDIT_CHANNELS = {
        **settings.DIDIT_CHANNELS,
        "WEBHOOK_ALLOW_SIMPLE_SIGNATURE": True,
        "API_KEY": "k",
        "API_BASE_URL": "http://127.0.0.1:9",  # discard port: nothing listens
        "API_MAX_RETRIES": 0,
    }
    headers = signed_headers(payload, b"", WEBHOOK_SECRET, int(time.time()), ("simple",))
    before = state_snapshot()
    body = json.dumps(payload).encode()
    response = Client().post(URL, body, content_type="application/json", headers=headers)
    assert response.status_code in (400, 401, 503)
    assert state_snapshot() == before
