"""X-Signature-Simple, when enabled: the body is not trusted, the decision is
fetched from Didit (a fake Didit served over real HTTP) before anything is applied.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.models.deliveries import DeliveryOutcome
from didit_channels.testing import status_payload

from .fake_didit import fake_didit  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def simple_enabled(settings, fake_didit):  # noqa: F811
    settings.DIDIT_CHANNELS = {
        **settings.DIDIT_CHANNELS,
        "WEBHOOK_ALLOW_SIMPLE_SIGNATURE": True,
        "API_MAX_RETRIES": 0,
    }
    return fake_didit


def decision_path(session_id: str) -> str:
    return f"/v3/session/{session_id}/decision/"


def test_the_fetched_decision_is_applied_not_the_body(simple_enabled, post_webhook, alice, bob):
    fake = simple_enabled
    session_id = fake.add_session(
        status="Declined", vendor_data=str(alice.pk), id_verifications=[{"first_name": "José"}]
    )
    # The envelope is genuine; everything else in the body could be forged.
    payload = status_payload(session_id, "Declined", vendor_data=str(bob.pk))
    payload["decision"] = {"forged": True}

    response = post_webhook(payload, schemes=("simple",))

    assert response.status_code == 200
    assert len(fake.requests_to("GET", decision_path(session_id))) == 1
    session = VerificationSession.objects.get()
    assert session.user == alice  # from the fetched decision, not the body's vendor_data
    assert session.decision["id_verifications"] == [{"first_name": "José"}]
    assert "forged" not in session.decision
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.ACCEPTED
    assert delivery.headers["verified_by"] == "simple"


def test_only_the_fetched_status_is_trusted(simple_enabled, post_webhook):
    session_id = simple_enabled.add_session(status="In Review")
    response = post_webhook(status_payload(session_id, "Approved"), schemes=("simple",))
    assert response.status_code == 200
    assert VerificationSession.objects.get().status == "In Review"


def test_fetch_failure_applies_nothing_and_answers_503(simple_enabled, post_webhook):
    fake = simple_enabled
    session_id = fake.add_session(status="Approved")
    fake.queue("GET", decision_path(session_id), 503)

    response = post_webhook(status_payload(session_id, "Approved"), schemes=("simple",))

    assert response.status_code == 503
    assert not VerificationSession.objects.exists()
    assert not StatusEvent.objects.exists()
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.ERROR
    assert delivery.signature_valid is True
    assert "decision fetch failed" in delivery.error


def test_unknown_session_at_didit_is_not_applied(simple_enabled, post_webhook):
    response = post_webhook(status_payload("never-created", "Approved"), schemes=("simple",))
    assert response.status_code == 503
    assert not VerificationSession.objects.exists()


def test_no_api_key_is_503_not_500(settings, simple_enabled, post_webhook):
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "API_KEY": ""}
    response = post_webhook(status_payload("s", "Approved"), schemes=("simple",))
    assert response.status_code == 503


def test_reprocess_fetches_again_once_didit_is_back(simple_enabled, post_webhook, alice):
    fake = simple_enabled
    session_id = fake.add_session(status="Approved", vendor_data=str(alice.pk))
    # Scripted answers are served in order: down for the webhook, back for the command.
    fake.queue("GET", decision_path(session_id), 503)
    fake.queue("GET", decision_path(session_id), 200, json=fake.sessions[session_id])
    assert (
        post_webhook(status_payload(session_id, "Approved"), schemes=("simple",)).status_code == 503
    )

    call_command("didit_reprocess", stdout=io.StringIO())

    session = VerificationSession.objects.get()
    assert (session.status, session.user) == ("Approved", alice)
    assert WebhookDelivery.objects.get().outcome == DeliveryOutcome.ACCEPTED


def test_simple_signed_duplicates_apply_once(simple_enabled, post_webhook):
    session_id = simple_enabled.add_session(status="Approved")
    payload = status_payload(session_id, "Approved")
    post_webhook(payload, schemes=("simple",))
    # A different unsigned event_id must not defeat deduplication.
    response = post_webhook({**payload, "event_id": "forged"}, schemes=("simple",))
    assert response.json()["outcome"] == "duplicate"
    assert StatusEvent.objects.count() == 1


def test_full_signatures_do_not_call_didit(simple_enabled, post_webhook):
    session_id = simple_enabled.add_session(status="Declined")
    assert post_webhook(status_payload(session_id, "Approved")).status_code == 200
    assert simple_enabled.requests_to("GET", decision_path(session_id)) == []
    assert VerificationSession.objects.get().status == "Approved"
