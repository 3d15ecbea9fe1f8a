"""Reading a decision needs view_decision and leaves an audit row (API and admin)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from didit_channels.audit import read_decision
from didit_channels.models import DecisionAccess, VerificationSession

DECISION = {
    "id_verification": {
        "first_name": "Zoë",
        "last_name": "Okonkwo-Lindqvist",
        "date_of_birth": "1987-03-14",
        "document_number": "P7Q2K9X41",
        "portrait_image": "https://images.example/portrait-7f3a.jpg",
    }
}

pytestmark = pytest.mark.django_db


def grant_view_decision(user):
    user.user_permissions.add(Permission.objects.get(codename="view_decision"))
    # A fresh instance: has_perm caches the permissions it found on the old one.
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def session(alice):
    return VerificationSession.objects.create(
        session_id="sess-pii-1", user=alice, status="Approved", decision=DECISION
    )


@pytest.fixture
def reader(django_user_model):
    user = django_user_model.objects.create_user("compliance", password="compliance")
    return grant_view_decision(user)


@pytest.fixture
def staff_admin(verification_admin):
    """A staff member of the admin audience, without view_decision."""
    verification_admin.is_staff = True
    verification_admin.save(update_fields=["is_staff"])
    return verification_admin


def api_url(session_id: str) -> str:
    return reverse("didit_channels:session-decision", kwargs={"session_id": session_id})


class TestApi:
    def test_url_is_the_documented_one(self):
        assert api_url("abc-123") == "/didit/api/sessions/abc-123/decision/"

    def test_reader_gets_the_decision_and_an_audit_row(self, jwt_client, reader, session):
        response = jwt_client(reader).get(api_url(session.session_id), REMOTE_ADDR="203.0.113.9")
        assert response.status_code == 200
        body = response.json()
        assert body["decision"] == DECISION
        assert body["session_id"] == session.session_id and body["status"] == "Approved"
        assert "no-store" in response["Cache-Control"]
        (access,) = DecisionAccess.objects.all()
        assert access.user == reader and access.username == "compliance"
        assert access.session == session and access.session_ref == "sess-pii-1"
        assert access.via == "api" and access.remote_addr == "203.0.113.9"
        assert access.accessed_at is not None

    def test_each_read_is_recorded(self, jwt_client, reader, session):
        client = jwt_client(reader)
        for _ in range(3):
            assert client.get(api_url(session.session_id)).status_code == 200
        assert DecisionAccess.objects.filter(session=session).count() == 3

    def test_session_login_works_too(self, client, reader, session):
        client.force_login(reader)
        assert client.get(api_url(session.session_id)).json()["decision"] == DECISION

    @pytest.mark.parametrize("who", ["owner", "admin_audience"])
    def test_owner_or_admin_audience_without_permission_gets_403(
        self, who, jwt_client, alice, verification_admin, session
    ):
        user = alice if who == "owner" else verification_admin
        response = jwt_client(user).get(api_url(session.session_id))
        assert response.status_code == 403
        assert "Zo" not in response.content.decode()
        assert not DecisionAccess.objects.exists()

    def test_without_permission_an_unknown_session_is_403_not_404(self, jwt_client, alice):
        # Otherwise the status code would tell which session ids exist.
        assert jwt_client(alice).get(api_url("no-such-session")).status_code == 403

    def test_unknown_session_is_404_for_a_reader(self, jwt_client, reader):
        assert jwt_client(reader).get(api_url("no-such-session")).status_code == 404
        assert not DecisionAccess.objects.exists()

    def test_anonymous_is_refused(self, client, session):
        response = client.get(api_url(session.session_id))
        assert response.status_code in (401, 403)
        assert not DecisionAccess.objects.exists()

    def test_inactive_reader_is_refused(self, jwt_client, reader, session):
        token_client = jwt_client(reader)
        type(reader).objects.filter(pk=reader.pk).update(is_active=False)
        assert token_client.get(api_url(session.session_id)).status_code in (401, 403)
        assert not DecisionAccess.objects.exists()

    def test_superuser_may_read(self, jwt_client, superuser, session):
        assert jwt_client(superuser).get(api_url(session.session_id)).status_code == 200

    def test_session_without_decision_returns_null_and_is_still_audited(
        self, jwt_client, reader, alice
    ):
        VerificationSession.objects.create(session_id="sess-empty", user=alice)
        response = jwt_client(reader).get(api_url("sess-empty"))
        assert response.status_code == 200 and response.json()["decision"] is None
        assert DecisionAccess.objects.filter(session_ref="sess-empty").count() == 1

    def test_writes_are_not_allowed(self, jwt_client, reader, session):
        response = jwt_client(reader).post(
            api_url(session.session_id), {"decision": {}}, format="json"
        )
        assert response.status_code == 405
        assert VerificationSession.objects.get(pk=session.pk).decision == DECISION


class TestReadDecisionFunction:
    def test_with_a_user_outside_a_request(self, reader, session):
        assert read_decision(session, reader, via="shell") == DECISION
        access = DecisionAccess.objects.get()
        assert access.via == "shell" and access.remote_addr is None

    def test_refuses_without_permission_and_records_nothing(self, alice, session):
        with pytest.raises(PermissionDenied):
            read_decision(session, alice, via="shell")
        assert not DecisionAccess.objects.exists()

    def test_audit_row_survives_deleting_the_session_and_the_reader(self, reader, session):
        read_decision(session, reader, via="shell")
        session.delete()
        reader.delete()
        access = DecisionAccess.objects.get()
        assert access.session is None and access.user is None
        assert access.session_ref == "sess-pii-1" and access.username == "compliance"


class TestAdmin:
    def change_url(self, session):
        return reverse("admin:didit_channels_verificationsession_change", args=[session.pk])

    def decision_url(self, session):
        return reverse("admin:didit_channels_verificationsession_decision", args=[session.pk])

    def test_reader_sees_the_decision_and_the_read_is_recorded(self, client, superuser, session):
        client.force_login(superuser)
        response = client.get(self.decision_url(session), REMOTE_ADDR="198.51.100.4")
        assert response.status_code == 200
        content = response.content.decode()
        assert "P7Q2K9X41" in content and "Zoë" in content
        assert "no-store" in response["Cache-Control"]
        access = DecisionAccess.objects.get()
        assert access.via == "admin" and access.user == superuser
        assert access.remote_addr == "198.51.100.4" and access.session == session

    def test_change_page_links_the_view_only_for_readers(
        self, client, superuser, staff_admin, session
    ):
        client.force_login(superuser)
        page = client.get(self.change_url(session)).content.decode()
        assert self.decision_url(session) in page
        assert "P7Q2K9X41" not in page  # the link, not the data

        client.force_login(staff_admin)
        page = client.get(self.change_url(session))
        assert page.status_code == 200
        assert self.decision_url(session) not in page.content.decode()
        assert not DecisionAccess.objects.exists()

    def test_admin_view_is_403_without_permission(self, client, staff_admin, session):
        client.force_login(staff_admin)
        response = client.get(self.decision_url(session))
        assert response.status_code == 403
        assert "P7Q2K9X41" not in response.content.decode()
        assert not DecisionAccess.objects.exists()

    def test_admin_view_of_unknown_session_is_404(self, client, superuser):
        client.force_login(superuser)
        url = reverse("admin:didit_channels_verificationsession_decision", args=[999999])
        assert client.get(url).status_code == 404
        assert not DecisionAccess.objects.exists()

    def test_non_staff_reader_is_sent_to_the_admin_login(self, client, reader, session):
        # view_decision alone does not open the admin to a non-staff user.
        client.force_login(reader)
        response = client.get(self.decision_url(session))
        assert response.status_code == 302
        assert not DecisionAccess.objects.exists()

    def test_session_pages_do_not_decrypt_into_the_page(self, client, superuser, session):
        client.force_login(superuser)
        listing = client.get(reverse("admin:didit_channels_verificationsession_changelist"))
        assert listing.status_code == 200 and "P7Q2K9X41" not in listing.content.decode()

    def test_audit_log_is_listed_read_only(self, client, superuser, reader, session):
        read_decision(session, reader, via="shell")
        client.force_login(superuser)
        listing = client.get(reverse("admin:didit_channels_decisionaccess_changelist"))
        assert listing.status_code == 200 and "compliance" in listing.content.decode()
        access = DecisionAccess.objects.get()
        change = reverse("admin:didit_channels_decisionaccess_change", args=[access.pk])
        assert client.post(change, {"username": "someone-else"}).status_code == 403
        delete = reverse("admin:didit_channels_decisionaccess_delete", args=[access.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403
        assert DecisionAccess.objects.get().username == "compliance"
