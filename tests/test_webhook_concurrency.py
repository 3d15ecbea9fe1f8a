"""Concurrent webhooks against a real threaded server (pytest-django's live_server).

Each request runs in its own server thread with its own database connection,
so writers really compete: on SQLite (WAL, busy timeout, IMMEDIATE
transactions from project/settings.py) and on PostgreSQL (row locks). Both
stacks run every test here; .ci/run runs the suite once on each.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.models.deliveries import DeliveryOutcome
from didit_channels.testing import signed_webhook, status_payload

from .conftest import WEBHOOK_SECRET

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


def post_all_at_once(url: str, requests: list[tuple[bytes, dict[str, str]]]) -> list[int]:
    """POST every (body, headers) from its own thread, released together."""
    barrier = threading.Barrier(len(requests))

    def post(request: tuple[bytes, dict[str, str]]) -> int:
        body, headers = request
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            response = client.post(
                url, content=body, headers={**headers, "Content-Type": "application/json"}
            )
            return response.status_code

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(post, requests))


def test_concurrent_webhooks_for_different_sessions_all_succeed(live_server):
    """The prototype on SQLite with Django's defaults answered 500 (database is locked)."""
    requests = [
        signed_webhook(status_payload(f"session-{n}", "Approved"), WEBHOOK_SECRET)
        for n in range(12)
    ]
    statuses = post_all_at_once(f"{live_server.url}/didit/webhook/", requests)

    assert statuses == [200] * 12
    assert VerificationSession.objects.filter(status="Approved").count() == 12
    assert StatusEvent.objects.count() == 12
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {
        DeliveryOutcome.ACCEPTED
    }


def test_twenty_copies_of_one_delivery_apply_once(live_server):
    payload = status_payload("session-dup", "Approved", event_id="ev-dup")
    request = signed_webhook(payload, WEBHOOK_SECRET)

    statuses = post_all_at_once(f"{live_server.url}/didit/webhook/", [request] * 20)

    assert statuses == [200] * 20
    assert StatusEvent.objects.count() == 1
    outcomes = list(WebhookDelivery.objects.values_list("outcome", flat=True))
    assert sorted(outcomes) == sorted([DeliveryOutcome.ACCEPTED] + [DeliveryOutcome.DUPLICATE] * 19)


def test_twenty_copies_without_event_id_apply_once(live_server):
    request = signed_webhook(status_payload("session-dup", "Approved"), WEBHOOK_SECRET)
    statuses = post_all_at_once(f"{live_server.url}/didit/webhook/", [request] * 20)
    assert statuses == [200] * 20
    assert StatusEvent.objects.count() == 1


def test_concurrent_changes_to_one_session_end_on_the_newest(live_server):
    now = int(time.time())
    statuses = ["Not Started", "In Progress", "In Review", "Resubmitted", "In Progress"]
    statuses += ["In Review", "Declined", "Resubmitted", "In Review", "Approved"]
    requests = [
        signed_webhook(status_payload("session-1", status, timestamp=now - 10 + n), WEBHOOK_SECRET)
        for n, status in enumerate(statuses)
    ]
    answers = post_all_at_once(f"{live_server.url}/didit/webhook/", list(reversed(requests)))

    assert answers == [200] * len(statuses)
    session = VerificationSession.objects.get()
    assert session.status == "Approved"
    assert session.last_event_at.timestamp() == now - 1
    # Whatever order they arrived in, the history never goes back in time.
    times = list(StatusEvent.objects.order_by("id").values_list("occurred_at", flat=True))
    assert times == sorted(times)
    applied = WebhookDelivery.objects.filter(outcome=DeliveryOutcome.ACCEPTED).count()
    stale = WebhookDelivery.objects.filter(outcome=DeliveryOutcome.STALE).count()
    assert applied == len(times) and applied + stale == len(statuses)
