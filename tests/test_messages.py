"""Frame shaping (pure): what a socket is sent, per the contract."""

import json
import uuid
from datetime import UTC, datetime

import msgpack

from didit_channels.live.messages import hello_frame, status_frame
from didit_channels.models import StatusEvent, VerificationSession


def make_event(user_id):
    session = VerificationSession(session_id="s-1", status="Approved")
    return StatusEvent(
        id=7,
        session=session,
        user_id=user_id,
        status="Approved",
        previous_status="In Review",
        webhook_type="status.updated",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_status_frame_has_exactly_the_contract_keys():
    frame = status_frame(make_event(3))
    assert frame == {
        "type": "status",
        "id": 7,
        "session_id": "s-1",
        "status": "Approved",
        "previous_status": "In Review",
        "webhook_type": "status.updated",
        "occurred_at": "2026-01-02T03:04:05+00:00",
        "user": 3,
    }


def test_uuid_primary_keys_survive_json_and_the_redis_layer_encoding():
    user_pk = uuid.uuid4()
    frame = status_frame(make_event(user_pk))
    hello = hello_frame(user_pk, ["user"], 0)
    assert frame["user"] == hello["user"] == str(user_pk)
    # channels_redis serialises layer messages with msgpack; JSON goes to the browser.
    for payload in (frame, hello):
        assert msgpack.unpackb(msgpack.packb(payload)) == payload
        assert json.loads(json.dumps(payload)) == payload
