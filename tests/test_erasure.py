"""Erasing one user's verification data: command, admin action, and what stays."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from didit_channels.audit import read_decision
from didit_channels.models import (
    DecisionAccess,
    StatusEvent,
    VerificationSession,
    WebhookDelivery,
)
from didit_channels.retention import erase_user

pytestmark = pytest.mark.django_db

DECISION = {"id_verification": {"full_name": "Alice Liddell", "document_number": "AL-0001"}}
BOB_DECISION = {"id_verification": {"full_name": "Robert Tables", "document_number": "BT-0002"}}


def session_with_data(session_id: str, user, decision=DECISION, deliveries: int = 2):
    session = VerificationSession.objects.create(
        session_id=session_id,
        user=user,
        status="Approved",
        decision=decision,
        decision_updated_at=timezone.now(),
    )
    for number in range(deliveries):
        delivery = WebhookDelivery.objects.create(
            raw_body=b'{"full_name": "..."}', body_size=20, session_id=session_id
        )
        StatusEvent.objects.create(
            session=session,
            user=user,
            status="Approved" if number else "In Review",
            previous_status=None,
            occurred_at=timezone.now(),
            dedupe_key=f"{session_id}-{number}",
            delivery=delivery,
        )
    return session


@pytest.fixture
def data(alice, bob, superuser):
    first = session_with_data("alice-1", alice)
    second = session_with_data("alice-2", alice, deliveries=1)
    bobs = session_with_data("bob-1", bob, decision=BOB_DECISION)
    read_decision(first, superuser, via="shell")
    return {"alice": [first, second], "bob": bobs}


def assert_bob_untouched(bobs):
    assert VerificationSession.objects.get(pk=bobs.pk).decision == BOB_DECISION
    assert WebhookDelivery.objects.filter(session_id="bob-1").count() == 2
    assert StatusEvent.objects.filter(session=bobs, delivery__isnull=False).count() == 2


class TestEraseUser:
    def test_removes_decisions_and_deliveries_and_keeps_status(self, alice, data):
        report = erase_user(alice)

        assert sorted(report.session_ids) == ["alice-1", "alice-2"]
        assert report.decisions_cleared == 2 and report.deliveries_deleted == 3
        assert report.sessions_deleted == 0
        for session in VerificationSession.objects.filter(user=alice):
            assert session.decision is None and session.decision_updated_at is None
            assert session.status == "Approved"
        assert not WebhookDelivery.objects.filter(session_id__startswith="alice").exists()
        # History stays, detached from the deleted deliveries.
        events = StatusEvent.objects.filter(session__user=alice)
        assert events.count() == 3 and not events.filter(delivery__isnull=False).exists()
        # The audit log is kept.
        assert DecisionAccess.objects.filter(session_ref="alice-1").count() == 1
        assert_bob_untouched(data["bob"])

    def test_delete_sessions_removes_sessions_and_history_too(self, alice, data):
        report = erase_user(alice, delete_sessions=True)
        assert report.sessions_deleted == 2 and report.events_deleted == 3
        assert not VerificationSession.objects.filter(user=alice).exists()
        assert not StatusEvent.objects.filter(dedupe_key__startswith="alice").exists()
        access = DecisionAccess.objects.get(session_ref="alice-1")
        assert access.session is None
        assert_bob_untouched(data["bob"])

    def test_dry_run_reports_and_changes_nothing(self, alice, data):
        report = erase_user(alice, dry_run=True)
        assert report.decisions_cleared == 2 and report.deliveries_deleted == 3
        assert VerificationSession.objects.get(session_id="alice-1").decision == DECISION
        assert WebhookDelivery.objects.count() == 5

    def test_user_without_sessions_is_a_no_op(self, django_user_model, data):
        nobody = django_user_model.objects.create_user("carol")
        report = erase_user(nobody)
        assert report.session_ids == [] and report.decisions_cleared == 0
        assert WebhookDelivery.objects.count() == 5

    def test_summary_says_what_was_removed(self, alice, data):
        summary = erase_user(alice).summary()
        assert "2 decision(s)" in summary and "3 webhook delivery(ies)" in summary
        assert "status history kept" in summary


class TestCommand:
    def run(self, *args, interactive: bool = False) -> str:
        out = StringIO()
        call_command("didit_erase_user", *args, interactive=interactive, stdout=out)
        return out.getvalue()

    def test_by_username_prints_what_it_removed(self, alice, data):
        output = self.run("alice")
        assert "alice" in output and "2 decision(s)" in output
        assert "3 webhook delivery(ies)" in output and "alice-1" in output
        assert not VerificationSession.objects.filter(user=alice, decision__isnull=False).exists()
        assert_bob_untouched(data["bob"])

    def test_by_pk(self, alice, data):
        self.run(str(alice.pk), "--by", "pk")
        assert not WebhookDelivery.objects.filter(session_id__startswith="alice").exists()

    def test_a_bare_number_is_a_pk_when_no_username_matches(self, alice, data):
        self.run(str(alice.pk))
        assert not WebhookDelivery.objects.filter(session_id__startswith="alice").exists()

    def test_ambiguous_identifier_is_refused(self, django_user_model, alice, bob, data):
        # A user named like bob's pk: the command must not guess.
        django_user_model.objects.create_user(str(bob.pk))
        with pytest.raises(CommandError, match="--by"):
            self.run(str(bob.pk))
        assert_bob_untouched(data["bob"])

    def test_unknown_user_is_an_error(self, data):
        with pytest.raises(CommandError, match="No user"):
            self.run("nobody")
        assert WebhookDelivery.objects.count() == 5

    def test_delete_sessions_option(self, alice, data):
        output = self.run("alice", "--delete-sessions")
        assert "2 session(s) with 3 status event(s)" in output
        assert not VerificationSession.objects.filter(user=alice).exists()

    def test_dry_run(self, alice, data):
        output = self.run("alice", "--dry-run")
        assert "Dry run" in output and "would remove" in output
        assert VerificationSession.objects.get(session_id="alice-1").decision == DECISION

    def test_interactive_run_stops_unless_confirmed(self, alice, data, monkeypatch):
        monkeypatch.setattr("builtins.input", lambda prompt: "no")
        with pytest.raises(CommandError, match="cancelled"):
            self.run("alice", interactive=True)
        assert VerificationSession.objects.get(session_id="alice-1").decision == DECISION

        monkeypatch.setattr("builtins.input", lambda prompt: "yes")
        self.run("alice", interactive=True)
        assert VerificationSession.objects.get(session_id="alice-1").decision is None


class TestAdminAction:
    changelist = "admin:didit_channels_verificationsession_changelist"

    def post_action(self, client, sessions, confirm: bool):
        data = {
            "action": "erase_verification_data",
            "_selected_action": [session.pk for session in sessions],
        }
        if confirm:
            data["post"] = "yes"
        return client.post(reverse(self.changelist), data, follow=confirm)

    def test_asks_for_confirmation_first(self, client, superuser, data):
        client.force_login(superuser)
        response = self.post_action(client, [data["alice"][0]], confirm=False)
        assert response.status_code == 200
        page = response.content.decode()
        assert "alice" in page and "cannot be undone" in page
        assert "AL-0001" not in page
        assert VerificationSession.objects.get(session_id="alice-1").decision == DECISION

    def test_erases_every_session_of_the_selected_sessions_users(
        self, client, superuser, alice, data
    ):
        client.force_login(superuser)
        # Selecting one of alice's sessions erases both of hers.
        response = self.post_action(client, [data["alice"][0]], confirm=True)
        assert response.status_code == 200
        messages = [str(message) for message in response.context["messages"]]
        assert any(
            "1 user(s) (alice)" in message
            and "2 decision(s)" in message
            and "3 webhook delivery(ies)" in message
            for message in messages
        ), messages
        assert not VerificationSession.objects.filter(user=alice, decision__isnull=False).exists()
        assert VerificationSession.objects.filter(user=alice).count() == 2
        assert_bob_untouched(data["bob"])

    def test_an_unassigned_session_is_erased_itself(self, client, superuser, data):
        orphan = session_with_data("orphan-1", None, deliveries=1)
        client.force_login(superuser)
        response = self.post_action(client, [orphan], confirm=True)
        messages = [str(message) for message in response.context["messages"]]
        assert any("1 unassigned session(s)" in message for message in messages), messages
        assert VerificationSession.objects.get(pk=orphan.pk).decision is None
        assert not WebhookDelivery.objects.filter(session_id="orphan-1").exists()
        assert VerificationSession.objects.get(session_id="alice-1").decision == DECISION

    def test_needs_the_delete_permission(self, client, verification_admin, data):
        verification_admin.is_staff = True
        verification_admin.save()
        client.force_login(verification_admin)
        listing = client.get(reverse(self.changelist))
        assert listing.status_code == 200
        assert "erase_verification_data" not in listing.content.decode()
        self.post_action(client, [data["alice"][0]], confirm=True)
        assert VerificationSession.objects.get(session_id="alice-1").decision == DECISION

        verification_admin.user_permissions.add(
            Permission.objects.get(codename="delete_verificationsession")
        )
        listing = client.get(reverse(self.changelist))
        assert "erase_verification_data" in listing.content.decode()
