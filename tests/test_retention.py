"""didit_purge: decisions and raw deliveries go after their retention periods; history stays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.utils import timezone

from didit_channels.conf import DEFAULTS
from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.retention import purge

pytestmark = pytest.mark.django_db

DECISION = {"id_verification": {"first_name": "Ana", "document_number": "D-558812"}}


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def make_session(session_id: str, *, decision_age_days: float | None, user=None):
    session = VerificationSession.objects.create(
        session_id=session_id, user=user, status="Approved", decision=DECISION
    )
    VerificationSession.objects.filter(pk=session.pk).update(
        decision_updated_at=None if decision_age_days is None else days_ago(decision_age_days)
    )
    return VerificationSession.objects.get(pk=session.pk)


def make_delivery(session_id: str, *, age_days: float) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.create(
        raw_body=b'{"first_name": "Ana"}', body_size=21, session_id=session_id
    )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(received_at=days_ago(age_days))
    return delivery


def make_event(session, delivery, key: str) -> StatusEvent:
    return StatusEvent.objects.create(
        session=session,
        user=session.user,
        status="Approved",
        previous_status="In Review",
        occurred_at=timezone.now(),
        dedupe_key=key,
        delivery=delivery,
    )


def test_documented_defaults():
    assert DEFAULTS["DELIVERY_RETENTION_DAYS"] == 30
    assert DEFAULTS["DECISION_RETENTION_DAYS"] == 365


def test_defaults_clear_old_decisions_and_keep_recent_ones(alice):
    old = make_session("s-old", decision_age_days=366, user=alice)
    recent = make_session("s-recent", decision_age_days=364, user=alice)
    report = purge()
    assert report.decisions_cleared == 1
    old.refresh_from_db()
    assert old.decision is None and old.decision_updated_at is None
    assert old.status == "Approved" and old.user == alice
    assert VerificationSession.objects.get(pk=recent.pk).decision == DECISION


def test_clearing_a_decision_does_not_touch_the_session_timestamp():
    session = make_session("s-old", decision_age_days=400)
    purge()
    assert VerificationSession.objects.get(pk=session.pk).updated_at == session.updated_at


def test_decision_without_a_timestamp_ages_from_the_session_creation():
    session = make_session("s-untimed", decision_age_days=None)
    purge()
    assert VerificationSession.objects.get(pk=session.pk).decision == DECISION
    VerificationSession.objects.filter(pk=session.pk).update(created_at=days_ago(400))
    assert purge().decisions_cleared == 1
    assert VerificationSession.objects.get(pk=session.pk).decision is None


def test_old_deliveries_are_deleted_and_history_keeps_its_rows():
    session = make_session("s-1", decision_age_days=1)
    old = make_delivery("s-1", age_days=31)
    recent = make_delivery("s-1", age_days=29)
    old_event = make_event(session, old, "k-old")
    recent_event = make_event(session, recent, "k-recent")

    report = purge()

    assert report.deliveries_deleted == 1
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [recent.pk]
    old_event.refresh_from_db()
    assert old_event.delivery is None and old_event.status == "Approved"
    assert StatusEvent.objects.get(pk=recent_event.pk).delivery_id == recent.pk
    assert VerificationSession.objects.get(pk=session.pk).decision == DECISION


def test_many_deliveries_are_deleted_across_batches(monkeypatch):
    monkeypatch.setattr("didit_channels.retention.BATCH_SIZE", 3)
    for _ in range(8):
        make_delivery("s-many", age_days=40)
    make_delivery("s-many", age_days=1)
    assert purge().deliveries_deleted == 8
    assert WebhookDelivery.objects.count() == 1


def test_deliveries_are_purged_even_when_their_body_cannot_be_decrypted(settings):
    make_delivery("s-lost", age_days=40)
    # The key it was written with is gone: purging must not need to read it.
    settings.DIDIT_CHANNELS = {"ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    assert purge().deliveries_deleted == 1
    assert not WebhookDelivery.objects.exists()


def test_periods_come_from_settings(settings):
    settings.DIDIT_CHANNELS = {
        **settings.DIDIT_CHANNELS,
        "DELIVERY_RETENTION_DAYS": 7,
        "DECISION_RETENTION_DAYS": 10,
    }
    session = make_session("s-1", decision_age_days=11)
    make_delivery("s-1", age_days=8)
    report = purge()
    assert (report.decisions_cleared, report.deliveries_deleted) == (1, 1)
    assert VerificationSession.objects.get(pk=session.pk).decision is None


def test_none_keeps_that_kind_of_data(settings):
    settings.DIDIT_CHANNELS = {
        **settings.DIDIT_CHANNELS,
        "DELIVERY_RETENTION_DAYS": None,
        "DECISION_RETENTION_DAYS": None,
    }
    make_session("s-1", decision_age_days=5000)
    make_delivery("s-1", age_days=5000)
    report = purge()
    assert (report.decisions_cleared, report.deliveries_deleted) == (0, 0)
    assert report.decision_cutoff is None and report.delivery_cutoff is None
    assert VerificationSession.objects.get().decision == DECISION
    assert WebhookDelivery.objects.count() == 1


class TestCommand:
    def run(self, *args) -> str:
        from io import StringIO

        out = StringIO()
        call_command("didit_purge", *args, stdout=out)
        return out.getvalue()

    def test_reports_what_it_removed(self):
        make_session("s-1", decision_age_days=400)
        make_delivery("s-1", age_days=40)
        make_delivery("s-1", age_days=41)
        output = self.run()
        assert "Cleared 1 decision(s)" in output
        assert "Deleted 2 webhook delivery(ies)" in output
        assert not WebhookDelivery.objects.exists()

    def test_dry_run_counts_and_changes_nothing(self):
        session = make_session("s-1", decision_age_days=400)
        make_delivery("s-1", age_days=40)
        output = self.run("--dry-run")
        assert "Would clear 1 decision(s)" in output
        assert "Would delete 1 webhook delivery(ies)" in output
        assert "nothing was changed" in output
        assert VerificationSession.objects.get(pk=session.pk).decision == DECISION
        assert WebhookDelivery.objects.count() == 1

    def test_options_override_the_settings(self):
        session = make_session("s-1", decision_age_days=3)
        make_delivery("s-1", age_days=3)
        self.run("--decision-days", "2", "--delivery-days", "2")
        assert VerificationSession.objects.get(pk=session.pk).decision is None
        assert not WebhookDelivery.objects.exists()

    def test_zero_days_removes_everything_up_to_now(self):
        make_session("s-1", decision_age_days=0.01)
        output = self.run("--decision-days", "0", "--delivery-days", "0")
        assert "Cleared 1 decision(s)" in output

    @pytest.mark.parametrize("value", ["-1", "soon"])
    def test_bad_periods_are_refused(self, value):
        make_session("s-1", decision_age_days=400)
        with pytest.raises(CommandError):
            self.run("--decision-days", value)
        assert VerificationSession.objects.get().decision == DECISION

    def test_a_bad_setting_is_a_clear_error(self, settings):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "DECISION_RETENTION_DAYS": -5}
        with pytest.raises(CommandError, match="DECISION_RETENTION_DAYS"):
            self.run()
