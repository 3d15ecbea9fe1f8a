"""POST /didit/webhook/: every row of the contract's response table, and the delivery log.

| answer | when                                                                 |
|--------|----------------------------------------------------------------------|
| 200    | accepted; duplicates and stale deliveries too                        |
| 400    | genuine body that is not a JSON object with session_id and status   |
| 401    | signature or timestamp missing, invalid or stale (also unsigned junk) |
| 405    | any other method                                                     |
| 413    | body over the size limit                                             |
| 500    | a server fault (database) - Didit retries                            |
| 503    | X-Signature-Simple accepted but the decision could not be fetched    |
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.db import connection, connections
from django.test import Client, RequestFactory, TestCase

from didit_channels.live.groups import admin_group, user_group
from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.models.deliveries import DeliveryOutcome
from didit_channels.signals import session_status_changed, webhook_received
from didit_channels.testing import signed_webhook, status_payload
from didit_channels.webhooks import views

from .conftest import WEBHOOK_SECRET
from .dbfaults import DELIVERIES, EVENTS, inserts_fail

URL = "/didit/webhook/"

pytestmark = pytest.mark.django_db


def post_raw(client, body: bytes, headers: dict[str, str] | None = None, **extra):
    # On-commit work (the webhook_received signal) runs as in production: see post_webhook.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            URL, body, content_type="application/json", headers=headers or {}, **extra
        )


def only_delivery() -> WebhookDelivery:
    [delivery] = WebhookDelivery.objects.all()
    return delivery


def assert_no_state_change():
    assert not VerificationSession.objects.exists()
    assert not StatusEvent.objects.exists()


@pytest.fixture
def received():
    """Every webhook_received signal: (delivery id, outcome)."""
    calls = []

    def receiver(sender, delivery, outcome, **kwargs):
        calls.append((delivery.pk, outcome))

    webhook_received.connect(receiver)
    yield calls
    webhook_received.disconnect(receiver)


# --- 200 -----------------------------------------------------------------------


class TestAccepted:
    def test_creates_the_session_and_one_history_row(self, post_webhook, alice, received):
        payload = status_payload("sess-1", "Approved", vendor_data=str(alice.pk), event_id="ev-1")
        response = post_webhook(payload)

        assert response.status_code == 200
        assert response.json()["outcome"] == "accepted"
        session = VerificationSession.objects.get(session_id="sess-1")
        assert session.status == "Approved"
        assert session.user == alice
        assert session.workflow_id == "wf-demo"
        assert session.vendor_data == str(alice.pk)
        [event] = StatusEvent.objects.all()
        assert (event.status, event.previous_status, event.user) == ("Approved", None, alice)
        assert event.occurred_at.timestamp() == payload["timestamp"]

        delivery = only_delivery()
        assert delivery.outcome == DeliveryOutcome.ACCEPTED
        assert delivery.signature_valid is True
        assert (delivery.session_id, delivery.event_id) == ("sess-1", "ev-1")
        assert delivery.dedupe_key == "event:ev-1"
        assert event.delivery == delivery
        assert received == [(delivery.pk, DeliveryOutcome.ACCEPTED)]

    def test_updates_an_existing_session_and_stores_the_decision(self, post_webhook):
        now = int(time.time())
        post_webhook(status_payload("sess-1", "In Progress", timestamp=now - 10))
        decision = {"id_verifications": [{"first_name": "José", "score": 97.0}]}
        response = post_webhook(
            status_payload("sess-1", "Approved", timestamp=now, decision=decision)
        )

        assert response.status_code == 200
        session = VerificationSession.objects.get()
        assert session.status == "Approved"
        assert session.decision == {"id_verifications": [{"first_name": "José", "score": 97.0}]}
        assert session.decision_updated_at is not None
        statuses = list(StatusEvent.objects.values_list("previous_status", "status"))
        assert statuses == [(None, "In Progress"), ("In Progress", "Approved")]

    def test_unresolvable_vendor_data_leaves_the_session_unassigned(self, post_webhook, alice):
        for vendor_data in ("no-such-user", "999999", ""):
            post_webhook(status_payload(f"s-{vendor_data}", "Approved", vendor_data=vendor_data))
        assert VerificationSession.objects.count() == 3
        assert not VerificationSession.objects.filter(user__isnull=False).exists()

    def test_unknown_status_is_stored_as_received(self, post_webhook):
        assert post_webhook(status_payload("s", "Something New")).status_code == 200
        assert VerificationSession.objects.get().status == "Something New"

    @pytest.mark.parametrize("schemes", [("v2",), ("raw",)])
    def test_either_signature_alone_is_enough(self, post_webhook, schemes):
        assert post_webhook(status_payload("s", "Approved"), schemes=schemes).status_code == 200

    def test_v2_holds_when_the_body_is_re_serialised(self, client):
        # What a proxy re-encoding the JSON forwards: other whitespace, key
        # order and escapes, integral floats kept as floats.
        payload = status_payload("s", "Approved", decision={"name": "Zoë 日本", "s": [97.0, 97.3]})
        reserialised = json.dumps(dict(reversed(list(payload.items()))), indent=3).encode()
        _, headers = signed_webhook(payload, WEBHOOK_SECRET, schemes=("v2",))
        assert post_raw(client, reserialised, headers).status_code == 200

    def test_rotated_secrets_are_all_accepted(self, settings, post_webhook):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "WEBHOOK_SECRETS": ["new", "old"]}
        assert post_webhook(status_payload("a", "Approved"), secret="old").status_code == 200
        assert post_webhook(status_payload("b", "Approved"), secret="new").status_code == 200
        assert post_webhook(status_payload("c", "Approved"), secret="other").status_code == 401

    def test_payload_timestamp_orders_then_created_at_then_x_timestamp(self, post_webhook):
        now = int(time.time())
        payload = status_payload("a", "Approved", timestamp=now - 100)
        payload["created_at"] = now - 200
        post_webhook(payload)
        del payload["timestamp"]
        payload["session_id"] = "b"
        post_webhook(payload)
        del payload["created_at"]
        payload["session_id"] = "c"
        post_webhook(payload, timestamp=now - 5)
        times = dict(VerificationSession.objects.values_list("session_id", "last_event_at"))
        assert times["a"].timestamp() == now - 100
        assert times["b"].timestamp() == now - 200
        assert times["c"].timestamp() == now - 5

    def test_iso_created_at_is_understood(self, post_webhook):
        payload = status_payload("a", "Approved")
        del payload["timestamp"]
        payload["created_at"] = "2024-05-01T10:00:00Z"
        assert post_webhook(payload).status_code == 200
        assert VerificationSession.objects.get().last_event_at.isoformat() == (
            "2024-05-01T10:00:00+00:00"
        )

    def test_works_with_csrf_checks_enforced(self, post_webhook):
        strict = Client(enforce_csrf_checks=True)
        response = post_webhook(status_payload("s", "Approved"), test_client=strict)
        assert response.status_code == 200


class TestAppliedOnce:
    def test_same_event_id_twice_changes_state_once(self, post_webhook, received):
        payload = status_payload("s", "Approved", event_id="ev-1")
        first, second = post_webhook(payload), post_webhook(payload)

        assert (first.status_code, second.status_code) == (200, 200)
        assert second.json()["outcome"] == "duplicate"
        assert StatusEvent.objects.count() == 1
        outcomes = [outcome for _, outcome in received]
        assert outcomes == [DeliveryOutcome.ACCEPTED, DeliveryOutcome.DUPLICATE]

    def test_same_event_id_with_a_new_x_timestamp_is_still_a_duplicate(self, post_webhook):
        payload = status_payload("s", "Approved", event_id="ev-1")
        post_webhook(payload, timestamp=int(time.time()) - 100)
        assert post_webhook(payload).json()["outcome"] == "duplicate"
        assert StatusEvent.objects.count() == 1

    def test_without_event_id_same_session_status_type_and_timestamp(self, post_webhook):
        payload = status_payload("s", "Approved")
        assert "event_id" not in payload
        post_webhook(payload)
        assert post_webhook(payload).json()["outcome"] == "duplicate"
        assert StatusEvent.objects.count() == 1

        other_type = {**payload, "webhook_type": "data.updated"}
        assert post_webhook(other_type).json()["outcome"] == "accepted"
        assert StatusEvent.objects.count() == 2

    def test_duplicate_sends_no_status_signal(self, post_webhook):
        sent = []
        session_status_changed.connect(receiver := lambda **kw: sent.append(kw["event"].pk))
        try:
            payload = status_payload("s", "Approved", event_id="ev-1")
            post_webhook(payload)
            post_webhook(payload)
        finally:
            session_status_changed.disconnect(receiver)
        assert len(sent) == 1


class TestInOrder:
    def test_an_older_webhook_is_recorded_but_does_not_roll_back(self, post_webhook):
        now = int(time.time())
        post_webhook(status_payload("s", "Approved", timestamp=now))
        late = post_webhook(status_payload("s", "In Progress", timestamp=now - 60))

        assert late.status_code == 200
        assert late.json()["outcome"] == "stale"
        session = VerificationSession.objects.get()
        assert session.status == "Approved"
        assert session.last_event_at.timestamp() == now
        assert list(StatusEvent.objects.values_list("status", flat=True)) == ["Approved"]
        stale = WebhookDelivery.objects.get(outcome=DeliveryOutcome.STALE)
        assert stale.session_id == "s" and stale.dedupe_key

    def test_a_retried_stale_delivery_is_a_duplicate(self, post_webhook):
        now = int(time.time())
        post_webhook(status_payload("s", "Approved", timestamp=now))
        late = status_payload("s", "In Progress", timestamp=now - 60)
        assert post_webhook(late).json()["outcome"] == "stale"
        assert post_webhook(late).json()["outcome"] == "duplicate"

    def test_a_future_payload_timestamp_cannot_freeze_the_session(self, post_webhook):
        now = int(time.time())
        post_webhook(status_payload("s", "In Review", timestamp=now + 10 * 365 * 86400))
        response = post_webhook(status_payload("s", "Approved", timestamp=now + 1))
        assert response.json()["outcome"] == "accepted"
        assert VerificationSession.objects.get().status == "Approved"


# --- 400 -----------------------------------------------------------------------


class TestMalformed:
    @pytest.mark.parametrize(
        "body",
        [
            b"[]",
            b'"Approved"',
            b"42",
            b"null",
            b"{not json",
            b"\xff\xfe\x00",
            b"",
            b'{"session_id": "s", "status": NaN}',
            b'{"session_id": "s"}',
            b'{"status": "Approved"}',
            b'{"session_id": 12, "status": "Approved"}',
            b'{"session_id": "s", "status": ["Approved"]}',
            b'{"session_id": "", "status": "Approved"}',
            b'{"session_id": "s\\u0000", "status": "Approved"}',
            b'{"session_id": "\\ud800", "status": "Approved"}',
            b'{"session_id": "s", "status": "Approved", "webhook_type": 7}',
            ('{"session_id": "' + "s" * 129 + '", "status": "Approved"}').encode(),
            ("[" * 200 + "]" * 200).encode(),
        ],
    )
    def test_signed_but_not_a_status_change_is_400(self, client, body, received):
        _, headers = signed_webhook({}, WEBHOOK_SECRET, schemes=("raw",), body=body)
        response = post_raw(client, body, headers)

        assert response.status_code == 400
        assert response.json()["outcome"] == "malformed"
        assert_no_state_change()
        delivery = only_delivery()
        assert delivery.outcome == DeliveryOutcome.MALFORMED
        assert delivery.signature_valid is True
        assert received == [(delivery.pk, DeliveryOutcome.MALFORMED)]

    def test_v2_signed_object_without_status_is_400(self, post_webhook):
        response = post_webhook({"session_id": "s"}, schemes=("v2",))
        assert response.status_code == 400
        assert "status" in response.json()["detail"]

    def test_odd_optional_fields_are_dropped_not_refused(self, post_webhook):
        payload = status_payload("s", "Approved", event_id="e" * 500)
        payload.update(vendor_data={"pk": 1}, workflow_id="w\x00", decision=["not", "a", "dict"])
        assert post_webhook(payload).status_code == 200
        session = VerificationSession.objects.get()
        assert (session.vendor_data, session.workflow_id, session.decision) == ("", "", None)
        assert StatusEvent.objects.get().dedupe_key.startswith("digest:")


# --- 401 -----------------------------------------------------------------------


class TestRefused:
    def payload(self):
        return status_payload("s", "Approved")

    def assert_refused(self, response):
        assert response.status_code == 401
        assert response.json()["outcome"] == "bad_signature"
        assert_no_state_change()
        delivery = only_delivery()
        assert delivery.outcome == DeliveryOutcome.BAD_SIGNATURE
        assert delivery.signature_valid is False

    def test_no_signature(self, client):
        body, headers = signed_webhook(self.payload(), WEBHOOK_SECRET, schemes=())
        self.assert_refused(post_raw(client, body, headers))

    def test_wrong_signature(self, client):
        body, headers = signed_webhook(self.payload(), "not-the-secret")
        self.assert_refused(post_raw(client, body, headers))

    def test_tampered_body(self, client):
        body, headers = signed_webhook(self.payload(), WEBHOOK_SECRET)
        self.assert_refused(post_raw(client, body.replace(b"Approved", b"Declined"), headers))

    def test_missing_timestamp(self, client):
        body, headers = signed_webhook(self.payload(), WEBHOOK_SECRET)
        del headers["X-Timestamp"]
        self.assert_refused(post_raw(client, body, headers))

    @pytest.mark.parametrize("offset", [-301, 301])
    def test_stale_or_future_timestamp(self, post_webhook, offset):
        response = post_webhook(self.payload(), timestamp=int(time.time()) + offset)
        self.assert_refused(response)

    def test_replay_after_the_window(self, post_webhook, client):
        body, headers = signed_webhook(
            self.payload(), WEBHOOK_SECRET, timestamp=int(time.time()) - 400
        )
        self.assert_refused(post_raw(client, body, headers))

    def test_no_secret_configured(self, settings, post_webhook, monkeypatch):
        monkeypatch.delenv("DIDIT_WEBHOOK_SECRET", raising=False)
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "WEBHOOK_SECRETS": []}
        self.assert_refused(post_webhook(self.payload(), secret=""))

    def test_simple_signature_is_refused_unless_enabled(self, post_webhook):
        self.assert_refused(post_webhook(self.payload(), schemes=("simple",)))

    def test_unsigned_junk_is_401_not_400(self, client):
        # Parse errors are not disclosed to a caller that cannot sign.
        self.assert_refused(post_raw(client, b"{not json", {"X-Timestamp": str(int(time.time()))}))


# --- 405 -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "head", "options"])
def test_other_methods_are_405(client, method):
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert not WebhookDelivery.objects.exists()


# --- 413 -----------------------------------------------------------------------


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


class TestTooLarge:
    LIMIT = 2048

    @pytest.fixture(autouse=True)
    def small_limit(self, settings):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "WEBHOOK_MAX_BODY_BYTES": self.LIMIT}

    def signed_body_of(self, size: int) -> tuple[bytes, dict[str, str]]:
        payload = status_payload("s", "Approved", decision={"pad": ""})
        base = len(json.dumps(payload).encode())
        payload["decision"]["pad"] = "x" * (size - base)
        body, headers = signed_webhook(payload, WEBHOOK_SECRET)
        assert len(body) == size
        return body, headers

    def test_body_at_the_limit_is_accepted(self, client):
        body, headers = self.signed_body_of(self.LIMIT)
        assert post_raw(client, body, headers).status_code == 200

    def test_body_over_the_limit_is_413_and_not_stored(self, client, received):
        body, headers = self.signed_body_of(self.LIMIT + 1)
        response = post_raw(client, body, headers)

        assert response.status_code == 413
        assert_no_state_change()
        delivery = only_delivery()
        assert delivery.outcome == DeliveryOutcome.TOO_LARGE
        assert delivery.raw_body is None
        assert delivery.body_size == self.LIMIT + 1
        assert received == [(delivery.pk, DeliveryOutcome.TOO_LARGE)]

    def test_declared_length_over_the_limit_is_refused_without_reading(self):
        body, headers = self.signed_body_of(self.LIMIT + 100)
        request = RequestFactory().post(URL, body, content_type="application/json", headers=headers)
        request._stream = stream = CountingStream(body)

        response = views.webhook(request)

        assert response.status_code == 413
        assert stream.bytes_read == 0
        assert only_delivery().body_size == self.LIMIT + 100

    def test_without_content_length_at_most_limit_plus_one_bytes_are_read(self):
        body = b"x" * (self.LIMIT * 50)
        request = RequestFactory().post(URL, body, content_type="application/json")
        del request.META["CONTENT_LENGTH"]
        request._stream = stream = CountingStream(body)

        response = views.webhook(request)

        assert response.status_code == 413
        assert stream.bytes_read == self.LIMIT + 1
        assert only_delivery().raw_body is None

    def test_lying_content_length_reads_no_more_than_the_limit(self):
        body = b"x" * (self.LIMIT * 50)
        request = RequestFactory().post(URL, body, content_type="application/json")
        request.META["CONTENT_LENGTH"] = "10"
        request._stream = stream = CountingStream(body)

        assert views.webhook(request).status_code == 413
        assert stream.bytes_read == self.LIMIT + 1

    def test_default_limit_is_one_mebibyte(self, settings, client):
        settings.DIDIT_CHANNELS = {
            key: value
            for key, value in settings.DIDIT_CHANNELS.items()
            if key != "WEBHOOK_MAX_BODY_BYTES"
        }
        body = b" " * (1024 * 1024 + 1)
        assert post_raw(client, body).status_code == 413
        assert post_raw(client, body[:-1]).status_code == 401

    @pytest.mark.django_db(transaction=True)
    async def test_over_the_limit_without_content_length_through_asgi(self):
        from channels.testing import HttpCommunicator

        from project.asgi import application

        communicator = HttpCommunicator(
            application,
            "POST",
            URL,
            body=b"{" * (self.LIMIT * 4),
            headers=[(b"host", b"127.0.0.1")],
        )
        response = await communicator.get_response(timeout=10)
        assert response["status"] == 413
        delivery = await database_sync_to_async(only_delivery)()
        assert delivery.raw_body is None and delivery.body_size == self.LIMIT + 1


# --- 500 -----------------------------------------------------------------------


class TestServerFault:
    def test_database_down_during_apply_is_500_and_leaves_an_error_row(
        self, post_webhook, received
    ):
        with inserts_fail(EVENTS):
            response = post_webhook(status_payload("s", "Approved", event_id="ev-1"))

        assert response.status_code == 500
        assert_no_state_change()
        delivery = only_delivery()
        assert delivery.outcome == DeliveryOutcome.ERROR
        assert delivery.signature_valid is True
        assert "OperationalError" in delivery.error
        assert received == [(delivery.pk, DeliveryOutcome.ERROR)]

        # Didit retries: the retry is applied once.
        assert post_webhook(status_payload("s", "Approved", event_id="ev-1")).status_code == 200
        assert StatusEvent.objects.count() == 1

    # Outside a test transaction: a failed statement would poison it.
    @pytest.mark.django_db(transaction=True)
    def test_database_down_before_recording_is_500(self, post_webhook):
        with inserts_fail(DELIVERIES):
            response = post_webhook(status_payload("s", "Approved"))
        assert response.status_code == 500
        assert response.json() == {"outcome": "error"}
        assert not WebhookDelivery.objects.exists()

    def test_a_failing_status_receiver_rolls_everything_back(self, post_webhook):
        def broken(**kwargs):
            raise RuntimeError("receiver bug")

        session_status_changed.connect(broken)
        try:
            response = post_webhook(status_payload("s", "Approved"))
        finally:
            session_status_changed.disconnect(broken)
        assert response.status_code == 500
        assert_no_state_change()
        assert only_delivery().outcome == DeliveryOutcome.ERROR

    def test_a_failing_webhook_received_receiver_does_not_fail_the_request(self, post_webhook):
        def broken(**kwargs):
            raise RuntimeError("receiver bug")

        webhook_received.connect(broken)
        try:
            assert post_webhook(status_payload("s", "Approved")).status_code == 200
        finally:
            webhook_received.disconnect(broken)

    def test_atomic_requests_do_not_roll_back_the_delivery_row(self, post_webhook, monkeypatch):
        monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
        with inserts_fail(EVENTS):
            response = post_webhook(status_payload("s", "Approved"))
        assert response.status_code == 500
        assert only_delivery().outcome == DeliveryOutcome.ERROR


# --- the delivery log and the logs ---------------------------------------------


class TestDeliveryLog:
    def test_recorded_with_safe_headers_and_no_signature_values(self, client):
        payload = status_payload("s", "Approved")
        body, headers = signed_webhook(payload, WEBHOOK_SECRET)
        headers["User-Agent"] = "DiditWebhook/2.0 +https://didit.me"
        post_raw(client, body, headers, REMOTE_ADDR="18.203.201.92")

        delivery = only_delivery()
        assert delivery.remote_addr == "18.203.201.92"
        assert delivery.raw_body == body
        assert delivery.body_size == len(body)
        assert delivery.headers["User-Agent"] == "DiditWebhook/2.0 +https://didit.me"
        assert delivery.headers["X-Timestamp"] == headers["X-Timestamp"]
        assert delivery.headers["signatures"] == {
            "X-Signature-V2": True,
            "X-Signature": True,
            "X-Signature-Simple": False,
        }
        stored = json.dumps(delivery.headers)
        assert headers["X-Signature-V2"] not in stored
        assert headers["X-Signature"] not in stored

    def test_raw_body_is_encrypted_at_rest(self, client):
        body, headers = signed_webhook(status_payload("s", "Approved"), WEBHOOK_SECRET)
        post_raw(client, body, headers)
        with connection.cursor() as cursor:
            cursor.execute("SELECT raw_body FROM didit_channels_webhookdelivery")
            [(stored,)] = cursor.fetchall()
        assert b"Approved" not in stored.encode()

    def test_even_refused_requests_are_recorded(self, client):
        post_raw(client, b"anything", {})
        assert only_delivery().raw_body == b"anything"

    def test_logs_carry_no_secret_signature_or_body(self, client, caplog):
        payload = status_payload("s", "Approved", decision={"name": "Zoë Secretname"})
        body, headers = signed_webhook(payload, WEBHOOK_SECRET)
        with caplog.at_level(logging.DEBUG, logger="didit_channels"):
            post_raw(client, body, headers)  # accepted
            post_raw(client, body, {**headers, "X-Signature": "0" * 64, "X-Signature-V2": "1" * 64})
            with inserts_fail(EVENTS):
                post_raw(client, *signed_webhook({**payload, "session_id": "t"}, WEBHOOK_SECRET))
        text = caplog.text
        assert "didit_channels.webhooks" in {record.name for record in caplog.records}
        for secret in (
            WEBHOOK_SECRET,
            headers["X-Signature"],
            headers["X-Signature-V2"],
            "Secretname",
        ):
            assert secret not in text


# --- published after commit ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
class TestPublished:
    async def test_owner_and_admin_groups_hear_of_an_accepted_webhook(self, any_layer, alice):
        layer = get_channel_layer()
        owner, admins = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(user_group(alice.pk), owner)
        await layer.group_add(admin_group(), admins)
        body, headers = signed_webhook(
            status_payload("s", "Approved", vendor_data=str(alice.pk)), WEBHOOK_SECRET
        )

        response = await database_sync_to_async(post_raw)(Client(), body, headers)

        assert response.status_code == 200
        event = await database_sync_to_async(StatusEvent.objects.get)()
        for channel in (owner, admins):
            message = await asyncio.wait_for(layer.receive(channel), 2)
            assert message["frame"]["id"] == event.pk
            assert message["frame"]["session_id"] == "s"
            assert "decision" not in message["frame"]

    def test_layer_down_still_answers_200_and_keeps_the_history(self, settings, post_webhook):
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},  # nothing listens there
            }
        }
        channel_layers.backends.clear()
        try:
            response = post_webhook(status_payload("s", "Approved"))
        finally:
            channel_layers.backends.clear()
        assert response.status_code == 200
        assert StatusEvent.objects.get().status == "Approved"
        assert VerificationSession.objects.get().status == "Approved"
