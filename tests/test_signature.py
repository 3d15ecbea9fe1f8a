"""webhooks.signature: pure verification, tested against hand-written vectors.

The expected messages below are written out literally (not produced by the
module under test), so a change in canonicalisation shows up as a failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didit_channels.webhooks import signature
from didit_channels.webhooks.signature import (
    canonical_json,
    normalize_floats,
    parse_timestamp,
    simple_message,
    timestamp_is_fresh,
    verify,
)

SECRET = "whsec-test-0123456789"
OLD_SECRET = "whsec-old-9876543210"
NOW = 1_700_000_000


def hex_hmac(secret: str, message: str | bytes) -> str:
    if isinstance(message, str):
        message = message.encode("utf-8")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check(raw_body: bytes, payload, **headers) -> signature.Verdict:
    arguments = {
        "secrets": [SECRET],
        "raw_body": raw_body,
        "payload": payload,
        "signature_v2": None,
        "signature_raw": None,
        "signature_simple": None,
        "timestamp": str(NOW),
        "now": NOW,
    }
    arguments.update(headers)
    return verify(**arguments)


# A Didit-like payload: non-ASCII names, integral and non-integral floats
# nested in lists and dicts, keys deliberately out of order.
PAYLOAD = {
    "status": "Approved",
    "session_id": "11111111-2222-3333-4444-555555555555",
    "webhook_type": "status.updated",
    "timestamp": NOW,
    "vendor_data": "42",
    "decision": {
        "id_verifications": [
            {"first_name": "José", "last_name": "Müller", "city": "東京", "score": 97.0},
        ],
        "face_matches": [{"scores": [97.0, 97.3, 0.0, -2.0, 1e-7]}],
        "emoji": "✅",
    },
}
CANONICAL = (
    '{"decision":{"emoji":"✅","face_matches":[{"scores":[97,97.3,0,-2,1e-07]}],'
    '"id_verifications":[{"city":"東京","first_name":"José","last_name":"Müller","score":97}]},'
    '"session_id":"11111111-2222-3333-4444-555555555555","status":"Approved",'
    '"timestamp":1700000000,"vendor_data":"42","webhook_type":"status.updated"}'
)


class TestCanonicalJson:
    def test_matches_the_hand_written_canonical_form(self):
        assert canonical_json(PAYLOAD) == CANONICAL.encode("utf-8")

    def test_keeps_non_ascii_unescaped_in_utf8(self):
        assert "José".encode() in canonical_json({"n": "José"})
        assert b"\\u00e9" not in canonical_json({"n": "José"})

    def test_integral_floats_become_ints_recursively(self):
        assert normalize_floats({"a": [97.0, {"b": [1.0, 2.5]}], "c": 3.0}) == {
            "a": [97, {"b": [1, 2.5]}],
            "c": 3,
        }
        assert canonical_json([97.0, 97.3]) == b"[97,97.3]"

    def test_bools_and_large_integral_floats(self):
        assert canonical_json({"t": True, "f": False, "n": None}) == (
            b'{"f":false,"n":null,"t":true}'
        )
        assert canonical_json([1e16]) == b"[10000000000000000]"

    def test_key_order_does_not_matter(self):
        reordered = json.loads(json.dumps(PAYLOAD, sort_keys=True))
        reordered = dict(reversed(list(reordered.items())))
        assert canonical_json(reordered) == canonical_json(PAYLOAD)


class TestSignatureV2:
    def test_valid_over_canonical_json(self):
        verdict = check(b"ignored", PAYLOAD, signature_v2=hex_hmac(SECRET, CANONICAL))
        assert verdict.valid and verdict.scheme == "v2"

    def test_survives_re_serialisation_with_other_whitespace_and_escapes(self):
        # What a proxy might forward: pretty-printed, ASCII-escaped, floats kept.
        raw = json.dumps(PAYLOAD, indent=2, ensure_ascii=True).encode()
        assert raw != CANONICAL.encode()
        verdict = check(raw, json.loads(raw), signature_v2=hex_hmac(SECRET, CANONICAL))
        assert verdict.valid and verdict.scheme == "v2"

    def test_signature_over_the_ascii_escaped_form_is_refused(self):
        escaped = json.dumps(
            normalize_floats(PAYLOAD), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
        assert not check(b"", PAYLOAD, signature_v2=hex_hmac(SECRET, escaped))

    def test_changed_value_is_refused(self):
        tampered = json.loads(json.dumps(PAYLOAD))
        tampered["decision"]["face_matches"][0]["scores"][1] = 97.4
        assert not check(b"", tampered, signature_v2=hex_hmac(SECRET, CANONICAL))

    def test_non_integral_float_is_not_rounded(self):
        signed = hex_hmac(SECRET, '{"score":97.3}')
        assert check(b"", {"score": 97.3}, signature_v2=signed)
        assert not check(b"", {"score": 97.0}, signature_v2=signed)

    def test_uppercase_hex_and_surrounding_space_are_accepted(self):
        signed = " " + hex_hmac(SECRET, CANONICAL).upper() + " "
        assert check(b"", PAYLOAD, signature_v2=signed)

    def test_needs_a_parsed_body(self):
        assert not check(b"{", None, signature_v2=hex_hmac(SECRET, "{"))

    def test_unserialisable_or_deep_payload_is_refused_not_raised(self):
        assert not check(b"", {"x": "\ud800"}, signature_v2="00" * 32)
        deep: list = []
        for _ in range(5000):
            deep = [deep]
        assert not check(b"", deep, signature_v2="00" * 32)


class TestSignatureRaw:
    RAW = b'{ "session_id" : "s1",\n  "status":"Approved", "name": "Jos\\u00e9", "s": 97.0 }'

    def test_valid_over_raw_bytes_whatever_their_whitespace(self):
        verdict = check(self.RAW, json.loads(self.RAW), signature_raw=hex_hmac(SECRET, self.RAW))
        assert verdict.valid and verdict.scheme == "raw"

    def test_works_without_a_parsed_body(self):
        body = b"not json at all \xff"
        assert check(body, None, signature_raw=hex_hmac(SECRET, body)).scheme == "raw"

    def test_one_byte_changed_is_refused(self):
        assert not check(self.RAW + b" ", None, signature_raw=hex_hmac(SECRET, self.RAW))

    def test_either_signature_is_enough(self):
        good_raw = hex_hmac(SECRET, self.RAW)
        verdict = check(
            self.RAW, json.loads(self.RAW), signature_v2="ab" * 32, signature_raw=good_raw
        )
        assert verdict.valid and verdict.scheme == "raw"


class TestSecrets:
    def test_any_configured_secret_matches_during_rotation(self):
        body = b'{"a":1}'
        for secret in (SECRET, OLD_SECRET):
            assert check(
                body, None, secrets=[SECRET, OLD_SECRET], signature_raw=hex_hmac(secret, body)
            )

    def test_unknown_secret_is_refused(self):
        body = b'{"a":1}'
        assert not check(body, None, secrets=[SECRET], signature_raw=hex_hmac(OLD_SECRET, body))

    def test_no_secret_configured_refuses_everything(self):
        body = b'{"a":1}'
        verdict = check(body, None, secrets=["", None], signature_raw=hex_hmac("", body))
        assert not verdict and verdict.reason == "no webhook secret configured"

    def test_bytes_secret(self):
        body = b"x"
        assert check(body, None, secrets=[SECRET.encode()], signature_raw=hex_hmac(SECRET, body))

    def test_comparison_is_constant_time(self, monkeypatch):
        calls = []
        real = hmac.compare_digest

        def spy(a, b):
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(signature.hmac, "compare_digest", spy)
        body = b"x"
        assert check(body, None, secrets=[SECRET, OLD_SECRET], signature_raw=hex_hmac(SECRET, body))
        # Every secret is compared, even after the first one matched.
        assert len(calls) == 2


class TestTimestamp:
    @pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
    def test_within_300_seconds_either_way(self, offset):
        body = b"x"
        stamp = str(NOW + offset)
        assert check(body, None, timestamp=stamp, signature_raw=hex_hmac(SECRET, body))

    @pytest.mark.parametrize("offset", [-301, 301, -86400])
    def test_outside_the_window_is_refused(self, offset):
        body = b"x"
        verdict = check(
            body, None, timestamp=str(NOW + offset), signature_raw=hex_hmac(SECRET, body)
        )
        assert not verdict and "timestamp" in verdict.reason

    @pytest.mark.parametrize(
        "stamp",
        [None, "", "abc", "1700000000.5", "1_700_000_000", "+1700000000", "-5",
         "١٧٠٠٠٠٠٠٠٠", "1" * 40],
    )  # fmt: skip
    def test_missing_or_malformed_is_refused(self, stamp):
        body = b"x"
        assert not check(body, None, timestamp=stamp, signature_raw=hex_hmac(SECRET, body))
        assert parse_timestamp(stamp) is None

    def test_tolerance_is_configurable(self):
        assert timestamp_is_fresh(str(NOW - 50), NOW, tolerance=60)
        assert not timestamp_is_fresh(str(NOW - 61), NOW, tolerance=60)

    def test_surrounding_whitespace_is_tolerated(self):
        assert parse_timestamp(f" {NOW}\t") == NOW

    def test_no_signature_header(self):
        verdict = check(b"x", None)
        assert not verdict and verdict.reason == "no signature header"


class TestSignatureSimple:
    ENVELOPE = {
        "timestamp": NOW,
        "session_id": "s-1",
        "status": "Approved",
        "webhook_type": "status.updated",
        "decision": {"anything": "unsigned"},
    }
    # Didit's published format: timestamp:session_id:status:webhook_type.
    MESSAGE = f"{NOW}:s-1:Approved:status.updated"

    def test_message_format(self):
        assert simple_message(self.ENVELOPE) == self.MESSAGE.encode()

    def test_missing_fields_are_empty(self):
        assert simple_message({"session_id": "s", "status": None}) == b":s::"

    def test_refused_unless_enabled(self):
        verdict = check(b"", self.ENVELOPE, signature_simple=hex_hmac(SECRET, self.MESSAGE))
        assert not verdict and verdict.reason == "X-Signature-Simple is not enabled"

    def test_accepted_when_enabled_and_flagged_as_envelope_only(self):
        verdict = check(
            b"", self.ENVELOPE, allow_simple=True, signature_simple=hex_hmac(SECRET, self.MESSAGE)
        )
        assert verdict.valid and verdict.scheme == "simple"

    def test_does_not_cover_the_decision_but_covers_the_status(self):
        signed = hex_hmac(SECRET, self.MESSAGE)
        other_decision = {**self.ENVELOPE, "decision": {"forged": True}}
        assert check(b"", other_decision, allow_simple=True, signature_simple=signed)
        other_status = {**self.ENVELOPE, "status": "Declined"}
        assert not check(b"", other_status, allow_simple=True, signature_simple=signed)

    def test_unencodable_envelope_is_refused_not_raised(self):
        envelope = {**self.ENVELOPE, "session_id": "\ud800"}
        assert not check(b"", envelope, allow_simple=True, signature_simple="00" * 32)

    def test_full_signatures_win_over_simple(self):
        verdict = check(
            b"",
            self.ENVELOPE,
            allow_simple=True,
            signature_simple=hex_hmac(SECRET, self.MESSAGE),
            signature_v2=hex_hmac(SECRET, canonical_json(self.ENVELOPE)),
        )
        assert verdict.scheme == "v2"


def test_verdict_reasons_never_contain_the_secret_or_signature():
    body = b"x"
    presented = hex_hmac(OLD_SECRET, body)
    for verdict in (
        check(body, None, signature_raw=presented),
        check(body, None, signature_raw=presented, timestamp="1"),
        check(body, None, signature_raw=hex_hmac(SECRET, body)),
    ):
        assert SECRET not in verdict.reason and presented not in verdict.reason


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    payload=st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    indent=st.none() | st.integers(0, 3),
)
def test_v2_holds_for_any_serialisation_of_the_same_payload(payload, indent):
    """Whatever whitespace, escaping or key order Didit's body arrives in."""
    try:
        canonical_json(payload)
    except UnicodeEncodeError:  # lone surrogates: Didit cannot have signed these
        return
    signed = signature.sign(SECRET, canonical_json(payload))
    raw = json.dumps(dict(reversed(list(payload.items()))), indent=indent, ensure_ascii=True)
    assert check(raw.encode(), json.loads(raw), signature_v2=signed).scheme == "v2"
