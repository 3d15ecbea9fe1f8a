"""The webhook's ASGI fast path (webhooks.asgi) answers exactly like the Django view.

Driven through the demo's real ASGI application with channels' HttpCommunicator,
so routing, body reading and the worker-thread hop are all real.
"""

from __future__ import annotations

import json

import pytest
from channels.testing import HttpCommunicator

from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.testing import signed_webhook, status_payload
from tests.conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def application():
    from project.asgi import application as app

    return app


async def call(method: str, path: str, body: bytes = b"", headers: dict | None = None):
    headers = {"Host": "127.0.0.1", **(headers or {})}
    pairs = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    pairs.append((b"content-type", b"application/json"))
    communicator = HttpCommunicator(application(), method, path, body=body, headers=pairs)
    response = await communicator.get_response(timeout=10)
    return response["status"], response["body"], dict(response["headers"])


async def post_signed(payload: dict, **signing):
    body, headers = signed_webhook(payload, WEBHOOK_SECRET, **signing)
    return await call("POST", "/didit/webhook/", body, headers)


async def test_a_signed_webhook_is_applied_once_and_a_copy_is_a_duplicate(alice):
    payload = status_payload("fast-1", "Approved", vendor_data=str(alice.pk), event_id="e-1")
    status, body, _ = await post_signed(payload)
    assert status == 200 and json.loads(body)["outcome"] == "accepted"
    status, body, _ = await post_signed(payload)
    assert status == 200 and json.loads(body)["outcome"] == "duplicate"
    session = await VerificationSession.objects.aget(session_id="fast-1")
    assert session.status == "Approved" and session.user_id == alice.pk
    assert await StatusEvent.objects.filter(session=session).acount() == 1


async def test_a_forged_signature_is_401_and_changes_nothing(db):
    body, headers = signed_webhook(status_payload("fast-2", "Approved"), "not-the-secret")
    status, _, _ = await call("POST", "/didit/webhook/", body, headers)
    assert status == 401
    delivery = await WebhookDelivery.objects.aget()
    assert delivery.outcome == "bad_signature"
    assert not await VerificationSession.objects.filter(session_id="fast-2").aexists()


async def test_a_genuine_body_without_status_is_400(db):
    status, body, _ = await post_signed({"session_id": "fast-3"})
    assert status == 400 and json.loads(body)["outcome"] == "malformed"
    assert not await StatusEvent.objects.aexists()


async def test_a_declared_length_over_the_limit_is_413_without_reading(settings, db):
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "WEBHOOK_MAX_BODY_BYTES": 64}
    body, headers = signed_webhook(status_payload("fast-4", "Approved"), WEBHOOK_SECRET)
    assert len(body) > 64
    status, _, _ = await call("POST", "/didit/webhook/", body, headers)
    assert status == 413
    delivery = await WebhookDelivery.objects.aget()
    assert delivery.outcome == "too_large" and delivery.raw_body is None


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_are_405(method, db):
    status, _, headers = await call(method, "/didit/webhook/")
    assert status == 405 and headers[b"allow"] == b"POST"
    # Not a delivery: nothing recorded (as with the Django view).
    assert await WebhookDelivery.objects.acount() == 0


async def test_other_paths_go_to_django(db):
    status, body, _ = await call("GET", "/", headers={"Host": "127.0.0.1"})
    assert status == 200 and b"Identity verification" in body


async def test_the_fast_path_follows_the_mount_prefix():
    from didit_channels.fastpath import FastPaths
    from didit_channels.webhooks.asgi import webhook_endpoint

    async def inner(scope, receive, send):  # pragma: no cover - never reached here
        raise AssertionError("should not be called")

    fast = FastPaths(inner)
    assert fast.endpoint_for({"type": "http", "path": "/didit/webhook/"}) is webhook_endpoint
    mounted = {"type": "http", "path": "/site/didit/webhook/", "root_path": "/site"}
    assert fast.endpoint_for(mounted) is webhook_endpoint
    assert fast.endpoint_for({"type": "http", "path": "/didit/webhook/x"}) is None
    assert fast.endpoint_for({"type": "websocket", "path": "/didit/webhook/"}) is None


async def test_an_accepted_webhook_is_published_to_owner_and_admins_and_a_forged_one_is_not(
    alice, memory_layer
):
    from channels.layers import get_channel_layer

    from didit_channels.live.groups import admin_group, user_group

    layer = get_channel_layer()
    admins, owner = await layer.new_channel(), await layer.new_channel()
    await layer.group_add(admin_group(), admins)
    await layer.group_add(user_group(alice.pk), owner)

    forged, headers = signed_webhook(status_payload("fast-6", "Declined"), "wrong")
    assert (await call("POST", "/didit/webhook/", forged, headers))[0] == 401
    status, _, _ = await post_signed(
        status_payload("fast-6", "Approved", vendor_data=str(alice.pk))
    )
    assert status == 200
    for channel in (admins, owner):
        message = await layer.receive(channel)
        assert message["type"] == "didit.status"
        assert message["frame"]["session_id"] == "fast-6"
        assert message["frame"]["status"] == "Approved"
    # Nothing else (the forged request) was published.
    assert layer.channels.get(admins) is None or layer.channels[admins].qsize() == 0


async def test_a_host_outside_allowed_hosts_is_refused_and_nothing_is_recorded(alice, caplog):
    body, headers = signed_webhook(status_payload("fast-host", "Approved"), WEBHOOK_SECRET)
    with caplog.at_level("WARNING", logger="django.security.DisallowedHost"):
        status, answer, _ = await call(
            "POST", "/didit/webhook/", body, {**headers, "Host": "evil.example"}
        )
    assert status == 400 and json.loads(answer) == {"detail": "Bad Request"}
    assert "evil.example" in caplog.text
    assert await WebhookDelivery.objects.acount() == 0
