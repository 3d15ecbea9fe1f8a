"""PostgreSQL: the webhook recorded and applied by one function call (``state_postgres``).

The function must do what the Python path does. ``TestSameAsThePythonPath``
sends the same webhooks through both (``WEBHOOK_ONE_ROUND_TRIP`` on and off)
and compares every row they leave, every answer, every signal and every
publication. The rest pins what only the function path promises: one
statement per webhook, the same history-ordering lock, and a function that
writes every column the models have.

(The rest of the suite runs on PostgreSQL in CI too, so every webhook test
there exercises the function; tests/dbfaults.py makes its inserts fail inside
the database, so the fault tests reach it as well.)
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from didit_channels import state, state_postgres
from didit_channels.live.groups import deferred_publications
from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.signals import session_status_changed, webhook_received
from didit_channels.testing import signed_webhook, status_payload
from didit_channels.webhooks import intake

from .conftest import WEBHOOK_SECRET, order_lock_waiters

pytestmark = pytest.mark.postgres

NOW = int(time.time())


def incoming(payload: dict, **signing: Any) -> intake.Incoming:
    body, headers = signed_webhook(payload, WEBHOOK_SECRET, **signing)
    return intake.Incoming(
        body=body, body_size=len(body), headers=headers, remote_addr="203.0.113.9"
    )


def scenario(alice, bob) -> list[dict]:
    """Webhooks that take every branch: new, changed, duplicate, stale, owner rules."""
    p = status_payload
    return [
        p("s1", "Not Started", vendor_data=str(alice.pk), event_id="e1", timestamp=NOW - 50),
        p("s1", "In Progress", event_id="e2", timestamp=NOW - 40, workflow_id="wf-1"),
        p("s1", "In Progress", event_id="e2", timestamp=NOW - 40),  # same event_id
        p("s1", "Declined", event_id="e3", timestamp=NOW - 45),  # older: stale
        p("s1", "Declined", event_id="e3", timestamp=NOW - 45),  # retried stale: duplicate
        # The owner is kept once assigned; a decision is stored (encrypted).
        p(
            "s1",
            "Approved",
            vendor_data=str(bob.pk),
            event_id="e4",
            timestamp=NOW - 30,
            decision={"status": "Approved", "id_verification": {"first_name": "Alice"}},
        ),
        p("s2", "In Progress", vendor_data="999999", timestamp=NOW - 20),  # unknown user
        p("s2", "In Progress", vendor_data="999999", timestamp=NOW - 20),  # digest duplicate
        p("s2", "Approved", vendor_data=str(bob.pk), timestamp=NOW - 10),  # now assigned
        p("s3", "Approved", vendor_data="not-a-key", timestamp=NOW - 5),
        p("s4", "Kyc Expired", timestamp=NOW, webhook_type="status.updated"),  # no vendor_data
        {**p("s4", "Approved", timestamp=NOW), "webhook_type": "data.updated"},
    ]


def run(
    payloads: list[dict], *, one_trip: bool, settings, listen: bool = True, signed_at: int
) -> dict:
    """Send ``payloads`` through the intake; everything they left, ids made ordinal.

    ``listen``: with a ``session_status_changed`` receiver (the function path
    then runs in a transaction of its own making) or without.
    """
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "WEBHOOK_ONE_ROUND_TRIP": one_trip}
    assert state_postgres.in_use() is one_trip
    StatusEvent.objects.all().delete()
    WebhookDelivery.objects.all().delete()
    VerificationSession.objects.all().delete()

    signals, announced = [], []

    def on_change(sender, session, event, previous_status, source, **kwargs):
        signals.append((session.session_id, session.status, event.status, previous_status, source))

    def on_delivery(sender, delivery, outcome, **kwargs):
        announced.append((delivery.session_id, outcome, delivery.dedupe_key))

    if listen:
        session_status_changed.connect(on_change)
    webhook_received.connect(on_delivery)
    answers = []
    try:
        with deferred_publications() as published:
            for payload in payloads:
                with TestCase.captureOnCommitCallbacks(execute=True):
                    result = intake.receive(incoming(payload, timestamp=signed_at))
                answers.append((result.status, result.outcome))
    finally:
        session_status_changed.disconnect(on_change)
        webhook_received.disconnect(on_delivery)

    event_ids = list(StatusEvent.objects.order_by("id").values_list("id", flat=True))
    delivery_ids = list(WebhookDelivery.objects.order_by("id").values_list("id", flat=True))

    def ordinal(ids, value):
        return None if value is None else ids.index(value)

    sessions = [
        (
            s.session_id,
            s.user_id,
            s.status,
            s.workflow_id,
            s.vendor_data,
            s.url,
            s.decision,
            s.decision_updated_at is not None,
            s.last_event_at,
        )
        for s in VerificationSession.objects.order_by("session_id")
    ]
    events = [
        (
            e.session.session_id,
            e.user_id,
            e.status,
            e.previous_status,
            e.webhook_type,
            e.occurred_at,
            e.dedupe_key,
            e.source,
            ordinal(delivery_ids, e.delivery_id),
        )
        for e in StatusEvent.objects.select_related("session").order_by("id")
    ]
    deliveries = [
        (
            d.outcome,
            d.signature_valid,
            d.session_id,
            d.event_id,
            d.dedupe_key,
            d.error,
            d.headers,
            d.raw_body,
            d.body_size,
            d.remote_addr,
            d.processed_at is not None,
        )
        for d in WebhookDelivery.objects.order_by("id")
    ]
    publications = [
        (
            {**frame, "id": ordinal(event_ids, frame["id"])},
            ordinal(event_ids, prev.overall),
            ordinal(event_ids, prev.owner),
        )
        for frame, prev in published
    ]
    return {
        "answers": answers,
        "sessions": sessions,
        "events": events,
        "deliveries": deliveries,
        "signals": signals,
        "announced": announced,
        "publications": publications,
    }


@pytest.mark.django_db
class TestSameAsThePythonPath:
    @pytest.mark.parametrize("listen", [True, False], ids=["with-receivers", "without"])
    def test_every_branch_leaves_the_same_rows(self, settings, alice, bob, listen):
        payloads = scenario(alice, bob)
        # Both signed at the same second: the stored X-Timestamp header must match.
        signed_at = int(time.time())
        python = run(
            payloads, one_trip=False, settings=settings, listen=listen, signed_at=signed_at
        )
        function = run(
            payloads, one_trip=True, settings=settings, listen=listen, signed_at=signed_at
        )
        for key in python:
            assert function[key] == python[key], key
        # The scenario took every branch it was written for.
        outcomes = [outcome for _status, outcome in python["answers"]]
        assert outcomes.count("accepted") == 8
        assert outcomes.count("duplicate") == 3 and outcomes.count("stale") == 1
        assert [s[1] for s in python["sessions"]] == [alice.pk, bob.pk, None, None]
        assert len(python["signals"]) == (8 if listen else 0)
        assert len(python["publications"]) == 8

    def test_a_resolver_of_your_own(self, settings, alice, bob):
        settings.DIDIT_CHANNELS = {
            **settings.DIDIT_CHANNELS,
            "USER_RESOLVER": "tests.test_state_postgres.resolve_by_username",
        }
        payloads = [
            status_payload("r1", "In Progress", vendor_data="bob", timestamp=NOW - 9),
            status_payload("r2", "In Progress", vendor_data="nobody", timestamp=NOW - 8),
            status_payload("r2", "Approved", vendor_data="alice", timestamp=NOW - 7),
        ]
        signed_at = int(time.time())
        python = run(payloads, one_trip=False, settings=settings, signed_at=signed_at)
        function = run(payloads, one_trip=True, settings=settings, signed_at=signed_at)
        assert function == python
        assert [s[1] for s in python["sessions"]] == [bob.pk, alice.pk]


def resolve_by_username(payload: dict):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(username=payload.get("vendor_data")).first()


@pytest.mark.django_db(transaction=True)
class TestOneRoundTrip:
    def test_a_new_session_is_one_statement(self):
        with CaptureQueriesContext(connection) as queries:
            result = intake.receive(incoming(status_payload("one", "Approved")))
        assert (result.status, result.outcome) == (200, "accepted")
        assert [q["sql"].split("(")[0] for q in queries.captured_queries] == [
            f"SELECT * FROM {state_postgres.FUNCTION}"
        ]
        assert StatusEvent.objects.get().session.session_id == "one"

    def test_a_change_to_an_existing_session_is_one_statement(self):
        intake.receive(incoming(status_payload("two", "In Progress", timestamp=NOW - 1)))
        with CaptureQueriesContext(connection) as queries:
            result = intake.receive(incoming(status_payload("two", "Approved", timestamp=NOW)))
        assert result.outcome == "accepted" and len(queries.captured_queries) == 1
        assert VerificationSession.objects.get().status == "Approved"

    def test_off_it_takes_the_python_path(self, settings):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "WEBHOOK_ONE_ROUND_TRIP": False}
        with CaptureQueriesContext(connection) as queries:
            intake.receive(incoming(status_payload("three", "Approved")))
        assert len(queries.captured_queries) > 5
        assert not any(state_postgres.FUNCTION in q["sql"] for q in queries.captured_queries)


@pytest.mark.django_db
class TestTheFunction:
    def definition(self) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_functiondef(%s::regproc)", [state_postgres.FUNCTION])
            return cursor.fetchone()[0]

    def test_takes_the_history_ordering_lock_state_takes(self):
        assert f"pg_advisory_xact_lock({state.EVENT_ORDER_LOCK_KEY})" in self.definition()

    def test_writes_every_column_of_the_rows_it_inserts(self):
        # A column added to a model without teaching the function would make
        # its INSERT fail (NOT NULL) or leave the column at its default.
        text = self.definition()
        for model in (VerificationSession, StatusEvent, WebhookDelivery):
            for field in model._meta.concrete_fields:
                if field.primary_key:
                    continue
                assert field.column in text, f"{model.__name__}.{field.name}"

    def test_its_arguments_are_the_ones_the_caller_names(self):
        text = self.definition()
        for name in state_postgres.ARGUMENTS:
            assert f"{name} " in text, name


@pytest.mark.django_db(transaction=True)
def test_a_webhook_queues_behind_a_python_path_change_holding_the_ordering_lock():
    """Ids commit in order across both paths: the function waits for the same lock."""
    paused, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold(sender, session, **kwargs):
        if session.session_id == "slow":
            paused.set()
            release.wait(20)

    def slow() -> None:
        try:
            state.apply_status_change(
                state.StatusChange(
                    session_id="slow",
                    status="Approved",
                    occurred_at=timezone.now(),
                    dedupe_key=f"test:{uuid.uuid4()}",
                )
            )
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    def webhook() -> None:
        try:
            result = intake.receive(incoming(status_payload("fast", "Approved")))
            assert result.outcome == "accepted"
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            connection.close()

    session_status_changed.connect(hold, weak=False)
    threads = [threading.Thread(target=slow), threading.Thread(target=webhook)]
    try:
        threads[0].start()
        assert paused.wait(10), "the slow change never reached its pause"
        threads[1].start()
        deadline = time.monotonic() + 10
        while order_lock_waiters() < 1:
            assert time.monotonic() < deadline, "the webhook never queued behind the slow change"
            time.sleep(0.02)
        assert not StatusEvent.objects.filter(session__session_id="fast").exists()
    finally:
        release.set()
        for thread in threads:
            thread.join(20)
        session_status_changed.disconnect(hold)
    assert not errors
    order = list(StatusEvent.objects.order_by("id").values_list("session__session_id", flat=True))
    assert order == ["slow", "fast"]
