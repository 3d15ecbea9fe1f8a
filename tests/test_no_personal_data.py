"""No value from a decision ever reaches a socket (CONTRACT: "No push carries personal data").

End to end through the demo's ASGI application: tickets from ``POST
/didit/api/tickets/``, signed webhooks to ``POST /didit/webhook/`` whose
decisions are full of personal data, and sockets at ``/ws/didit/`` for the
session owner and for an admin. Every frame they receive — hello, snapshot,
live status frames, a resume replay — is checked for every value of every
decision. Runs on the in-memory layer and on real Redis.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from rest_framework_simplejwt.tokens import RefreshToken

from didit_channels.models import VerificationSession
from didit_channels.testing import signed_webhook, status_payload
from project.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("any_layer")]

TIMEOUT = 5

# The keys each frame type may carry (CONTRACT.md, "Server -> client").
FRAME_KEYS = {
    "hello": {"type", "user", "audiences", "cursor"},
    "snapshot": {"type", "sessions"},
    "status": {
        "type",
        "id",
        "session_id",
        "status",
        "previous_status",
        "webhook_type",
        "occurred_at",
        "user",
    },
    "resumed": {"type", "cursor"},
}
SNAPSHOT_ENTRY_KEYS = {"session_id", "status", "updated_at"}


def decision_for(person: str) -> dict[str, Any]:
    """A Didit-shaped decision whose every value is personal and recognisable.

    Values are long and distinctive so that finding one as a substring of a
    frame means it leaked, not that it collided with an id or a timestamp.
    """
    return {
        "id_verification": {
            "first_name": f"Zofia-{person}",
            "last_name": f"Wiśniewska-Quartermaine-{person}",
            "full_name": f"Zofia-{person} Wiśniewska-Quartermaine-{person}",
            "date_of_birth": "1979-11-23",
            "age": "forty-six-years",
            "gender": "female-marker",
            "nationality": "Polish-nationality",
            "document_type": "Passport-document",
            "document_number": f"PZK4471093{person}",
            "personal_number": f"79112304567-{person}",
            "expiration_date": "2031-04-17",
            "date_of_issue": "2021-04-18",
            "issuing_state_name": "Rzeczpospolita-Polska",
            "place_of_birth": "Kraków-Nowa-Huta",
            "address": f"Ulica Kwiatowa 17/{person}, 00-950 Warszawa",
            "portrait_image": f"https://media.didit.example/portrait-8f2c1e{person}.jpg",
            "front_image": f"https://media.didit.example/front-3b9a7d{person}.jpg",
            "back_image": f"https://media.didit.example/back-c41e02{person}.jpg",
            "warnings": [{"risk": "possible-duplicated-user-zofia", "log_type": "warning-log"}],
        },
        "liveness": {
            "score": "0.9873146",
            "reference_image": f"https://media.didit.example/selfie-77aa{person}.jpg",
            "video_url": f"https://media.didit.example/liveness-video-{person}.mp4",
        },
        "face_match": {
            "similarity_score": "93.40177",
            "source_image": f"https://media.didit.example/source-face-{person}.jpg",
        },
        "ip_analysis": {
            "ip_address": "198.51.100.237",
            "ip_city": "Warszawa-Mokotów",
            "device_brand": "Fairphone-brand-7",
            "locations_info": {"ip": {"location": {"latitude": "52.1939481"}}},
        },
        "contact": {"email": f"zofia.{person}@mail.example", "phone": "+48 601 555 017"},
    }


def personal_values(decision: Any) -> set[str]:
    """Every leaf value of the decision, as text."""
    if isinstance(decision, dict):
        return set().union(*(personal_values(value) for value in decision.values()))
    if isinstance(decision, list):
        return set().union(*(personal_values(value) for value in decision))
    return {str(decision)}


def frames_text(frames: list[dict[str, Any]]) -> str:
    # Unescaped, so a non-ASCII value is found however the server escaped it.
    return "\n".join(json.dumps(frame, ensure_ascii=False) for frame in frames)


async def http(method: str, path: str, body: bytes = b"", headers=()) -> dict[str, Any]:
    communicator = HttpCommunicator(
        application,
        method,
        path,
        body=body,
        headers=[(b"host", b"testserver"), *headers],
    )
    return await communicator.get_response(timeout=TIMEOUT)


async def post_webhook(payload: dict[str, Any], secret: str) -> None:
    body, signed = signed_webhook(payload, secret)
    headers = [(b"content-type", b"application/json")]
    headers += [(name.lower().encode(), value.encode()) for name, value in signed.items()]
    response = await http("POST", "/didit/webhook/", body, headers)
    assert response["status"] == 200, response


async def open_socket(user) -> tuple[WebsocketCommunicator, list[dict[str, Any]]]:
    """A ticket from the API, then the socket; returns it with its hello and snapshot."""
    token = await database_sync_to_async(lambda: str(RefreshToken.for_user(user).access_token))()
    response = await http(
        "POST", "/didit/api/tickets/", headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    assert response["status"] == 201, response
    ticket = json.loads(response["body"])["ticket"]
    socket = WebsocketCommunicator(application, f"/ws/didit/?ticket={ticket}")
    connected, _ = await socket.connect(TIMEOUT)
    assert connected
    greeting = [await socket.receive_json_from(TIMEOUT) for _ in range(2)]
    assert [frame["type"] for frame in greeting] == ["hello", "snapshot"]
    return socket, greeting


async def drain(socket: WebsocketCommunicator, until_type: str | None = None) -> list[dict]:
    """Frames until one of ``until_type`` arrives, or until the socket goes quiet."""
    frames: list[dict] = []
    while True:
        if until_type is None and await socket.receive_nothing(0.5):
            return frames
        frame = await socket.receive_json_from(TIMEOUT)
        frames.append(frame)
        if frame["type"] == until_type:
            return frames


def assert_contract_shapes(frames: list[dict[str, Any]]) -> None:
    for frame in frames:
        assert set(frame) == FRAME_KEYS[frame["type"]], frame
        for entry in frame.get("sessions", []):
            assert set(entry) == SNAPSHOT_ENTRY_KEYS, entry


async def test_no_frame_to_any_audience_carries_a_value_from_the_decision(
    alice, superuser, webhook_secret
):
    decisions = {
        "before": decision_for("A1"),  # alice's session, decided before the sockets open
        "live": decision_for("B2"),  # alice's session, decided while they are open
        "unassigned": decision_for("C3"),  # nobody's: the admin audience only
    }
    secret_values = set().union(*(personal_values(d) for d in decisions.values()))

    # A session of alice's with a decision already stored: it is in the snapshot.
    await post_webhook(
        status_payload(
            "sess-before",
            "Approved",
            vendor_data=str(alice.pk),
            decision=decisions["before"],
            event_id="evt-1",
        ),
        webhook_secret,
    )

    owner, owner_frames = await open_socket(alice)
    admin, admin_frames = await open_socket(superuser)
    assert [s["session_id"] for s in owner_frames[1]["sessions"]] == ["sess-before"]

    # Live pushes: alice's session through two statuses, then an unassigned one.
    for number, (session_id, status, vendor_data, decision) in enumerate(
        [
            ("sess-live", "In Review", str(alice.pk), decisions["live"]),
            ("sess-live", "Declined", str(alice.pk), decisions["live"]),
            ("sess-orphan", "Approved", "no-such-user", decisions["unassigned"]),
        ],
        start=2,
    ):
        await post_webhook(
            status_payload(
                session_id,
                status,
                vendor_data=vendor_data,
                decision=decision,
                event_id=f"evt-{number}",
                timestamp=1_700_000_000 + number,
            ),
            webhook_secret,
        )
    owner_frames += await drain(owner)
    admin_frames += await drain(admin)

    # Then each socket asks for everything again, from the start.
    for socket, frames in ((owner, owner_frames), (admin, admin_frames)):
        await socket.send_json_to({"type": "resume", "after": 0})
        frames += await drain(socket, until_type="resumed")
        await socket.disconnect()

    # The decisions really went in: their absence from the frames means something.
    stored = await database_sync_to_async(
        lambda: {s.session_id: s.decision for s in VerificationSession.objects.all()}
    )()
    assert stored == {
        "sess-before": decisions["before"],
        "sess-live": decisions["live"],
        "sess-orphan": decisions["unassigned"],
    }

    # The sockets saw what they should (so there was something to check) ...
    def seen(frames):
        return [(f["session_id"], f["status"]) for f in frames if f["type"] == "status"]

    live_for_owner = [("sess-live", "In Review"), ("sess-live", "Declined")]
    assert seen(owner_frames) == live_for_owner + [("sess-before", "Approved")] + live_for_owner
    assert ("sess-orphan", "Approved") in seen(admin_frames)
    assert len(seen(admin_frames)) == 3 + 4
    assert admin_frames[-1]["type"] == "resumed" and owner_frames[-1]["type"] == "resumed"

    # ... and nothing from any decision, in any frame, in any form.
    for frames in (owner_frames, admin_frames):
        assert_contract_shapes(frames)
        text = frames_text(frames)
        leaked = sorted(value for value in secret_values if value in text)
        assert leaked == [], f"personal data reached a socket: {leaked}"
