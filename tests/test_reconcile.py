"""didit_reconcile: fetch quiet, unfinished sessions from (the fake) Didit and apply changes."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from didit_channels.client import DiditClient
from didit_channels.live.groups import admin_group, user_group
from didit_channels.models import StatusEvent, VerificationSession
from didit_channels.reconcile import Outcome, reconcile, reconcile_session, sessions_due
from didit_channels.signals import session_status_changed
from didit_channels.state import StatusChange, apply_status_change
from tests.fake_didit import fake_didit  # noqa: F401

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


def make_session(session_id: str, status: str, *, user=None, quiet_for=2 * HOUR):
    """A session whose last change was ``quiet_for`` ago."""
    when = timezone.now() - quiet_for
    apply_status_change(
        StatusChange(
            session_id=session_id,
            status=status,
            occurred_at=when,
            dedupe_key=f"test:{session_id}:{status}",
            user=user,
        )
    )
    VerificationSession.objects.filter(session_id=session_id).update(updated_at=when)
    return VerificationSession.objects.get(session_id=session_id)


def run(*args: str) -> str:
    out = StringIO()
    call_command("didit_reconcile", *args, stdout=out)
    return out.getvalue()


def reconcile_events(session_id: str):
    return StatusEvent.objects.filter(session__session_id=session_id, source="reconcile")


class TestApplies:
    def test_a_missed_change_is_applied_with_history(self, alice, fake_didit):  # noqa: F811
        make_session("s1", "In Progress", user=alice)
        fake_didit.add_session(
            "s1", status="Approved", vendor_data=str(alice.pk), id_verification={"ok": True}
        )

        output = run()

        session = VerificationSession.objects.get(session_id="s1")
        assert session.status == "Approved"
        assert session.decision["id_verification"] == {"ok": True}
        (event,) = reconcile_events("s1")
        assert (event.previous_status, event.status) == ("In Progress", "Approved")
        assert event.user == alice
        assert event.webhook_type == "status.updated"
        assert "1 updated" in output

    def test_the_change_is_signalled_and_pushed(
        self,
        alice,
        fake_didit,  # noqa: F811
        memory_layer,
        django_capture_on_commit_callbacks,
    ):
        make_session("s1", "Not Started", user=alice)
        fake_didit.add_session("s1", status="Declined")
        layer = get_channel_layer()
        user_channel = async_to_sync(layer.new_channel)()
        admin_channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(user_group(alice.pk), user_channel)
        async_to_sync(layer.group_add)(admin_group(), admin_channel)
        signalled = []

        def receiver(**kwargs):
            signalled.append((kwargs["source"], kwargs["event"].status))

        session_status_changed.connect(receiver)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                run()
        finally:
            session_status_changed.disconnect(receiver)

        assert signalled == [("reconcile", "Declined")]
        for channel in (user_channel, admin_channel):
            message = async_to_sync(layer.receive)(channel)
            assert message["frame"]["session_id"] == "s1"
            assert message["frame"]["status"] == "Declined"
            assert message["frame"]["previous_status"] == "Not Started"

    def test_an_unassigned_session_finds_its_owner_from_vendor_data(self, alice, fake_didit):  # noqa: F811
        make_session("s1", "In Progress")
        fake_didit.add_session("s1", status="In Review", vendor_data=str(alice.pk))
        run()
        assert VerificationSession.objects.get(session_id="s1").user == alice


class TestIdempotence:
    def test_running_twice_records_one_history_row(self, fake_didit):  # noqa: F811
        make_session("s1", "In Progress")
        fake_didit.add_session("s1", status="In Review")  # still non-final: due again

        run()
        VerificationSession.objects.filter(session_id="s1").update(
            updated_at=timezone.now() - 2 * HOUR
        )
        second = run()

        assert reconcile_events("s1").count() == 1
        assert "1 unchanged" in second
        assert len(fake_didit.requests) == 2

    def test_overlapping_runs_that_read_the_same_state_apply_once(self, fake_didit):  # noqa: F811
        snapshot = make_session("s1", "In Progress")
        fake_didit.add_session("s1", status="Approved")

        with DiditClient.from_settings() as client:
            first = reconcile_session(snapshot, client)
            second = reconcile_session(snapshot, client)  # the other run's stale copy

        assert (first, second) == (Outcome.UPDATED, Outcome.SKIPPED)
        assert reconcile_events("s1").count() == 1

    @pytest.mark.postgres
    @pytest.mark.django_db(transaction=True)
    def test_concurrent_runs_on_postgres_apply_once(self, fake_didit):  # noqa: F811
        make_session("s1", "In Progress")
        # Both fetches are in flight at once, so both runs see the old state.
        fake_didit.queue(
            "GET",
            "/v3/session/s1/decision/",
            200,
            json={"session_id": "s1", "status": "Approved"},
            delay=0.3,
        )
        outcomes: list[Outcome] = []

        def one_run() -> None:
            try:
                snapshot = VerificationSession.objects.get(session_id="s1")
                with DiditClient.from_settings() as client:
                    outcomes.append(reconcile_session(snapshot, client))
            finally:
                connection.close()

        threads = [threading.Thread(target=one_run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert sorted(o.value for o in outcomes) == ["skipped", "updated"]
        assert reconcile_events("s1").count() == 1

    def test_a_webhook_landing_during_the_fetch_wins(self, fake_didit):  # noqa: F811
        snapshot = make_session("s1", "In Progress")
        fake_didit.add_session("s1", status="In Review")  # what Didit said a moment ago
        apply_status_change(  # the webhook with newer news arrives meanwhile
            StatusChange(
                session_id="s1",
                status="Approved",
                occurred_at=timezone.now(),
                dedupe_key="event:late-webhook",
            )
        )

        with DiditClient.from_settings() as client:
            assert reconcile_session(snapshot, client) is Outcome.SKIPPED

        assert VerificationSession.objects.get(session_id="s1").status == "Approved"
        assert not reconcile_events("s1").exists()

    def test_a_later_change_back_to_an_earlier_status_is_recorded(self, fake_didit):  # noqa: F811
        make_session("s1", "In Progress")
        fake_didit.add_session("s1", status="Resubmitted")
        run()
        VerificationSession.objects.filter(session_id="s1").update(status="In Progress")
        VerificationSession.objects.filter(session_id="s1").update(
            updated_at=timezone.now() - 2 * HOUR
        )
        run()
        assert reconcile_events("s1").count() == 2


class TestSelection:
    def test_final_and_recent_sessions_are_left_alone(self, fake_didit):  # noqa: F811
        make_session("final", "Approved")
        make_session("recent", "In Progress", quiet_for=timedelta(minutes=5))
        due = make_session("due", "In Progress")
        fake_didit.add_session("due", status="In Progress")

        assert list(sessions_due()) == [due]
        run()
        assert [r.path for r in fake_didit.requests] == ["/v3/session/due/decision/"]

    def test_age_comes_from_the_setting(self, fake_didit, settings):  # noqa: F811
        make_session("s1", "In Progress", quiet_for=timedelta(minutes=10))
        assert not sessions_due().exists()
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "RECONCILE_AFTER_SECONDS": 300}
        assert sessions_due().exists()

    def test_older_than_option_overrides_the_setting(self, fake_didit):  # noqa: F811
        make_session("s1", "In Progress", quiet_for=timedelta(minutes=10))
        fake_didit.add_session("s1", status="Approved")
        run("--older-than", "60")
        assert VerificationSession.objects.get(session_id="s1").status == "Approved"

    def test_limit_takes_the_longest_silent_first(self, fake_didit):  # noqa: F811
        make_session("older", "In Progress", quiet_for=5 * HOUR)
        make_session("newer", "In Progress", quiet_for=2 * HOUR)
        for session_id in ("older", "newer"):
            fake_didit.add_session(session_id, status="Approved")

        run("--limit", "1")

        assert VerificationSession.objects.get(session_id="older").status == "Approved"
        assert VerificationSession.objects.get(session_id="newer").status == "In Progress"

    def test_dry_run_lists_and_calls_nothing(self, fake_didit):  # noqa: F811
        make_session("s1", "In Progress")
        output = run("--dry-run")
        assert "s1\tIn Progress" in output
        assert "1 session(s) due" in output
        assert fake_didit.requests == []


class TestFailures:
    def test_one_failure_does_not_stop_the_run_but_fails_the_command(
        self,
        fake_didit,  # noqa: F811
        settings,
    ):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "API_MAX_RETRIES": 0}
        make_session("unknown-to-didit", "In Progress", quiet_for=3 * HOUR)
        make_session("broken", "In Progress", quiet_for=3 * HOUR)
        make_session("fine", "In Progress")
        fake_didit.queue("GET", "/v3/session/broken/decision/", 503)
        fake_didit.add_session("fine", status="Approved")

        with pytest.raises(CommandError, match="2 session"):
            run()

        assert VerificationSession.objects.get(session_id="fine").status == "Approved"
        statuses = VerificationSession.objects.filter(
            session_id__in=["unknown-to-didit", "broken"]
        ).values_list("status", flat=True)
        assert set(statuses) == {"In Progress"}

    def test_a_decision_without_status_changes_nothing(self, fake_didit):  # noqa: F811
        make_session("s1", "In Progress")
        fake_didit.queue("GET", "/v3/session/s1/decision/", 200, json={"session_id": "s1"})
        report = reconcile()
        assert report.count(Outcome.FAILED) == 1
        assert VerificationSession.objects.get(session_id="s1").status == "In Progress"

    def test_not_configured_is_a_command_error_naming_the_setting(self, settings, monkeypatch):
        monkeypatch.delenv("DIDIT_API_KEY", raising=False)
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "API_KEY": ""}
        with pytest.raises(CommandError, match="DIDIT_API_KEY"):
            run()

    @pytest.mark.parametrize("bad", [["--older-than", "-1"], ["--limit", "0"]])
    def test_bad_options_are_refused(self, bad):
        with pytest.raises(CommandError):
            run(*bad)
