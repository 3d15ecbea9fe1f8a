"""manage.py didit_reprocess and didit_send_webhook."""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.models.deliveries import DeliveryOutcome
from didit_channels.testing import status_payload

from .conftest import WEBHOOK_SECRET
from .dbfaults import EVENTS, inserts_fail


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
class TestReprocess:
    def failed_delivery(self, post_webhook, payload) -> WebhookDelivery:
        with inserts_fail(EVENTS):
            assert post_webhook(payload).status_code == 500
        return WebhookDelivery.objects.get(outcome=DeliveryOutcome.ERROR)

    def test_reapplies_a_failed_delivery(self, post_webhook, alice):
        payload = status_payload("s", "Approved", vendor_data=str(alice.pk), event_id="ev-1")
        delivery = self.failed_delivery(post_webhook, payload)

        output = run("didit_reprocess")

        assert f"delivery {delivery.pk}: accepted" in output
        session = VerificationSession.objects.get()
        assert (session.status, session.user) == ("Approved", alice)
        [event] = StatusEvent.objects.all()
        assert event.delivery_id == delivery.pk
        delivery.refresh_from_db()
        assert delivery.outcome == DeliveryOutcome.ACCEPTED and delivery.error == ""

    def test_a_delivery_didit_already_retried_becomes_a_duplicate(self, post_webhook):
        payload = status_payload("s", "Approved", event_id="ev-1")
        delivery = self.failed_delivery(post_webhook, payload)
        assert post_webhook(payload).status_code == 200  # Didit's retry

        assert f"delivery {delivery.pk}: duplicate" in run("didit_reprocess")
        assert StatusEvent.objects.count() == 1

    def test_reprocessing_does_not_roll_back_a_newer_status(self, post_webhook):
        old = status_payload("s", "In Progress", timestamp=int(time.time()) - 60)
        delivery = self.failed_delivery(post_webhook, old)
        post_webhook(status_payload("s", "Approved"))

        assert f"delivery {delivery.pk}: stale" in run("didit_reprocess")
        assert VerificationSession.objects.get().status == "Approved"

    def test_only_verified_deliveries_in_error_are_touched(self, post_webhook, client):
        client.post("/didit/webhook/", b"{}", content_type="application/json")  # 401
        post_webhook(status_payload("ok", "Approved"))  # accepted
        WebhookDelivery.objects.create(outcome=DeliveryOutcome.ERROR, signature_valid=None)

        assert "nothing to do" in run("didit_reprocess")
        ids = [str(pk) for pk in WebhookDelivery.objects.values_list("pk", flat=True)]
        assert "nothing to do" in run("didit_reprocess", *ids)
        assert StatusEvent.objects.count() == 1

    def test_still_failing_exits_non_zero(self, post_webhook):
        self.failed_delivery(post_webhook, status_payload("s", "Approved"))
        with inserts_fail(EVENTS), pytest.raises(CommandError, match="still failing"):
            run("didit_reprocess")
        assert WebhookDelivery.objects.get().outcome == DeliveryOutcome.ERROR

    def test_dry_run_lists_and_changes_nothing(self, post_webhook):
        delivery = self.failed_delivery(post_webhook, status_payload("s-dry", "Approved"))
        output = run("didit_reprocess", "--dry-run")
        assert f"{delivery.pk}\ts-dry" in output
        assert "1 delivery(ies) would be reprocessed" in output
        assert not StatusEvent.objects.exists()

    def test_limit_and_ids(self, post_webhook):
        first = self.failed_delivery(post_webhook, status_payload("a", "Approved"))
        with inserts_fail(EVENTS):
            post_webhook(status_payload("b", "Approved"))
        assert run("didit_reprocess", "--limit", "1").count(": accepted") == 1
        first.refresh_from_db()
        assert first.outcome == DeliveryOutcome.ACCEPTED  # oldest first
        assert "1 accepted" in run("didit_reprocess")


@pytest.mark.django_db(transaction=True)
class TestSendWebhook:
    def test_signs_and_posts_a_webhook_the_intake_accepts(self, live_server, alice):
        output = run(
            "didit_send_webhook",
            f"{live_server.url}/didit/webhook/",
            "--session-id",
            "console-test",
            "--status",
            "In Review",
            "--vendor-data",
            str(alice.pk),
        )
        assert "-> 200" in output
        assert WEBHOOK_SECRET not in output
        session = VerificationSession.objects.get(session_id="console-test")
        assert (session.status, session.user) == ("In Review", alice)

    def test_custom_payload_and_single_scheme(self, live_server, tmp_path):
        path = tmp_path / "payload.json"
        payload = status_payload("from-file", "Declined", decision={"name": "Zoë 日本", "s": 97.0})
        path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        output = run(
            "didit_send_webhook", f"{live_server.url}/didit/webhook/", "--payload", f"@{path}",
            "--signatures", "v2",
        )  # fmt: skip
        assert "-> 200" in output
        assert VerificationSession.objects.get().status == "Declined"

    def test_a_refused_webhook_is_a_command_error(self, live_server):
        with pytest.raises(CommandError, match="answered 401"):
            run("didit_send_webhook", f"{live_server.url}/didit/webhook/", "--secret", "wrong")
        assert not VerificationSession.objects.exists()

    def test_without_a_secret_it_says_which_setting_to_set(self, settings, monkeypatch):
        monkeypatch.delenv("DIDIT_WEBHOOK_SECRET", raising=False)
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "WEBHOOK_SECRETS": []}
        with pytest.raises(CommandError, match="WEBHOOK_SECRETS"):
            run("didit_send_webhook", "http://127.0.0.1:9/didit/webhook/")

    def test_unreachable_url_is_a_command_error(self):
        with pytest.raises(CommandError, match="failed"):
            run("didit_send_webhook", "http://127.0.0.1:9/didit/webhook/", "--timeout", "2")
