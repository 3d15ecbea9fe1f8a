"""The sessions REST API: list, detail and start, with Didit served by the fake."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from didit_channels.live.groups import user_group
from didit_channels.models import StatusEvent, VerificationSession
from didit_channels.state import StatusChange, apply_status_change
from tests.fake_didit import FAKE_API_KEY, FAKE_WORKFLOW_ID, fake_didit  # noqa: F401

LIST = "/didit/api/sessions/"


def detail(session_id: str) -> str:
    return f"/didit/api/sessions/{session_id}/"


def make_session(user, *statuses: str, session_id: str | None = None) -> VerificationSession:
    """A session owned by ``user`` that went through ``statuses`` (history included)."""
    session_id = session_id or f"sess-{uuid.uuid4()}"
    start = timezone.now() - timedelta(hours=1)
    for step, status in enumerate(statuses or ("Not Started",)):
        apply_status_change(
            StatusChange(
                session_id=session_id,
                status=status,
                occurred_at=start + timedelta(minutes=step),
                dedupe_key=f"test:{session_id}:{step}",
                user=user,
                url=f"https://verify.didit.me/session/{session_id}",
            )
        )
    return VerificationSession.objects.get(session_id=session_id)


def status_page_url() -> str:
    try:
        return "http://testserver" + reverse("didit_channels:status")
    except NoReverseMatch:
        return "http://testserver/"


class TestStart:
    def test_creates_a_didit_session_and_answers_201_with_the_hosted_url(
        self,
        alice,
        jwt_client,
        fake_didit,  # noqa: F811
    ):
        response = jwt_client(alice).post(LIST)

        assert response.status_code == 201, response.content
        body = response.json()
        assert body["url"].startswith("https://verify.didit.me/session/")
        assert body["status"] == "Not Started"
        assert body["user"] == alice.pk
        assert response["Location"] == detail(body["session_id"])
        session = VerificationSession.objects.get(session_id=body["session_id"])
        assert (session.user, session.status, session.url) == (alice, "Not Started", body["url"])
        assert session.vendor_data == str(alice.pk)
        assert session.workflow_id == FAKE_WORKFLOW_ID
        (event,) = session.events.all()
        assert (event.status, event.previous_status, event.source) == ("Not Started", None, "api")

    def test_sends_the_users_pk_as_vendor_data_and_the_status_page_as_callback(
        self,
        alice,
        jwt_client,
        fake_didit,  # noqa: F811
    ):
        jwt_client(alice).post(LIST)
        (request,) = fake_didit.requests_to("POST", "/v3/session/")
        assert request.json == {
            "workflow_id": FAKE_WORKFLOW_ID,
            "vendor_data": str(alice.pk),
            "callback": status_page_url(),
        }

    def test_callback_url_setting_wins(self, alice, jwt_client, fake_didit, settings):  # noqa: F811
        settings.DIDIT_CHANNELS = {
            **settings.DIDIT_CHANNELS,
            "CALLBACK_URL": "https://app.example/verified/",
        }
        jwt_client(alice).post(LIST)
        assert fake_didit.requests[0].json["callback"] == "https://app.example/verified/"

    def test_the_owners_socket_hears_of_the_new_session(
        self,
        alice,
        jwt_client,
        fake_didit,  # noqa: F811
        memory_layer,
        django_capture_on_commit_callbacks,
    ):
        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(user_group(alice.pk), channel)

        with django_capture_on_commit_callbacks(execute=True):
            response = jwt_client(alice).post(LIST)

        message = async_to_sync(layer.receive)(channel)
        assert message["type"] == "didit.status"
        assert message["frame"]["session_id"] == response.json()["session_id"]
        assert message["frame"]["status"] == "Not Started"
        assert message["frame"]["user"] == alice.pk

    def test_starting_again_returns_the_unfinished_session_without_new_history(
        self,
        alice,
        jwt_client,
        fake_didit,  # noqa: F811
    ):
        client = jwt_client(alice)
        first = client.post(LIST).json()
        second = client.post(LIST)

        assert second.status_code == 201
        assert second.json()["session_id"] == first["session_id"]
        assert VerificationSession.objects.count() == 1
        assert StatusEvent.objects.count() == 1

    def test_keeps_the_status_didit_reports_for_a_reused_session(
        self,
        alice,
        jwt_client,
        fake_didit,  # noqa: F811
    ):
        fake_didit.add_session(
            "already-running",
            status="In Progress",
            vendor_data=str(alice.pk),
            workflow_id=FAKE_WORKFLOW_ID,
        )
        body = jwt_client(alice).post(LIST).json()
        assert (body["session_id"], body["status"]) == ("already-running", "In Progress")

    def test_each_user_gets_their_own_session(self, alice, bob, jwt_client, fake_didit):  # noqa: F811
        ours = jwt_client(alice).post(LIST).json()["session_id"]
        theirs = jwt_client(bob).post(LIST).json()["session_id"]
        assert ours != theirs
        assert VerificationSession.objects.get(session_id=theirs).user == bob


class TestStartFailures:
    @pytest.mark.parametrize(
        "missing,named",
        [("API_KEY", "DIDIT_API_KEY"), ("WORKFLOW_ID", "DIDIT_WORKFLOW_ID")],
    )
    def test_not_configured_is_503_naming_the_setting(
        self,
        alice,
        jwt_client,
        fake_didit,  # noqa: F811
        settings,
        monkeypatch,
        missing,
        named,
    ):
        monkeypatch.delenv(named, raising=False)
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, missing: ""}

        response = jwt_client(alice).post(LIST)

        assert response.status_code == 503
        assert response.json()["code"] == "didit_not_configured"
        assert f'DIDIT_CHANNELS["{missing}"]' in response.json()["detail"]
        assert named in response.json()["detail"]
        assert fake_didit.requests == []
        assert not VerificationSession.objects.exists()

    def test_didit_failing_is_502_with_a_safe_message(
        self,
        alice,
        jwt_client,
        fake_didit,  # noqa: F811
        settings,
        caplog,
    ):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "API_MAX_RETRIES": 0}
        fake_didit.queue(
            "POST", "/v3/session/", 500, json={"detail": "internal trace at db-7.didit"}
        )

        response = jwt_client(alice).post(LIST)

        assert response.status_code == 502
        assert response.json()["code"] == "didit_unavailable"
        assert "db-7" not in response.content.decode()
        assert not VerificationSession.objects.exists()
        # Operators get Didit's words in the log; never the key.
        assert "db-7" in caplog.text
        assert FAKE_API_KEY not in caplog.text

    def test_didit_refusing_is_502(self, alice, jwt_client, fake_didit):  # noqa: F811
        fake_didit.queue("POST", "/v3/session/", 400, json={"detail": "Insufficient credits."})
        response = jwt_client(alice).post(LIST)
        assert response.status_code == 502
        assert len(fake_didit.requests) == 1

    def test_rate_limited_passes_on_retry_after(self, alice, jwt_client, fake_didit):  # noqa: F811
        fake_didit.queue("POST", "/v3/session/", 429, headers={"Retry-After": "120"})
        response = jwt_client(alice).post(LIST)
        assert response.status_code == 502
        assert response["Retry-After"] == "120"

    @pytest.mark.parametrize(
        "answer",
        [
            {"session_id": "s1"},
            {"url": "https://verify.didit.me/session/x"},
            {"session_id": "s1", "url": "javascript:alert(1)"},
            {"session_id": "x" * 500, "url": "https://verify.didit.me/session/x"},
            {"session_id": 12, "url": "https://verify.didit.me/session/x"},
        ],
    )
    def test_unusable_answer_is_502_and_stores_nothing(
        self,
        alice,
        jwt_client,
        fake_didit,  # noqa: F811
        answer,
    ):
        fake_didit.queue("POST", "/v3/session/", 201, json=answer)
        response = jwt_client(alice).post(LIST)
        assert response.status_code == 502
        assert response.json()["code"] == "didit_invalid_response"
        assert not VerificationSession.objects.exists()


class TestAuthentication:
    def test_anonymous_is_refused(self, db, fake_didit):  # noqa: F811
        client = APIClient()
        assert client.get(LIST).status_code == 401
        assert client.post(LIST).status_code == 401
        assert client.get(detail("any")).status_code == 401
        assert fake_didit.requests == []

    def test_session_login_needs_the_csrf_token_to_start(self, alice, fake_didit):  # noqa: F811
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(alice)
        assert client.post(LIST).status_code == 403
        assert fake_didit.requests == []

        # Django's double-submit check: the header must match the csrftoken cookie.
        token = "t" * 32
        client.cookies["csrftoken"] = token
        response = client.post(LIST, HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 201

    def test_session_login_reads_without_csrf(self, alice):
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(alice)
        assert client.get(LIST).status_code == 200


class TestList:
    def test_a_user_sees_only_their_own_sessions(self, alice, bob, jwt_client):
        own = make_session(alice, "Not Started", "In Progress")
        make_session(bob, "Approved")

        body = jwt_client(alice).get(LIST).json()

        assert [entry["session_id"] for entry in body["results"]] == [own.session_id]
        entry = body["results"][0]
        assert entry["status"] == "In Progress"
        assert entry["url"] == own.url
        assert entry["user"] == alice.pk
        assert set(entry) == {
            "session_id",
            "status",
            "url",
            "workflow_id",
            "user",
            "created_at",
            "updated_at",
        }

    @pytest.mark.parametrize("admin", ["verification_admin", "superuser"])
    def test_the_admin_audience_sees_every_session(self, request, alice, bob, jwt_client, admin):
        ours, theirs = make_session(alice), make_session(bob)
        unassigned = make_session(None)
        body = jwt_client(request.getfixturevalue(admin)).get(LIST).json()

        by_id = {entry["session_id"]: entry for entry in body["results"]}
        assert set(by_id) == {ours.session_id, theirs.session_id, unassigned.session_id}
        # The hosted link continues someone's verification: only its owner gets it.
        assert {entry["url"] for entry in by_id.values()} == {None}
        assert by_id[ours.session_id]["user"] == alice.pk
        assert by_id[unassigned.session_id]["user"] is None

    def test_no_decision_data_in_the_list(self, alice, jwt_client):
        session = make_session(alice, "Approved")
        session.decision = {"id_verification": {"first_name": "Alice-Secret-Name"}}
        session.save()
        text = jwt_client(alice).get(LIST).content.decode()
        assert "Alice-Secret-Name" not in text
        assert "decision" not in text

    def test_newest_first_in_cursor_pages(self, alice, jwt_client):
        sessions = [make_session(alice) for _ in range(3)]
        client = jwt_client(alice)

        first = client.get(LIST, {"page_size": 2}).json()
        second = client.get(first["next"]).json()

        newest_first = [s.session_id for s in reversed(sessions)]
        assert [e["session_id"] for e in first["results"]] == newest_first[:2]
        assert [e["session_id"] for e in second["results"]] == newest_first[2:]
        assert second["next"] is None
        assert first["previous"] is None

    def test_page_size_is_bounded(self, superuser, jwt_client):
        VerificationSession.objects.bulk_create(
            VerificationSession(session_id=f"bulk-{n}") for n in range(205)
        )
        client = jwt_client(superuser)
        assert len(client.get(LIST).json()["results"]) == 50
        assert len(client.get(LIST, {"page_size": 10_000}).json()["results"]) == 200

    @pytest.mark.parametrize("admin", [False, True])
    def test_query_count_does_not_grow_with_the_sessions(
        self, alice, verification_admin, jwt_client, admin
    ):
        viewer = verification_admin if admin else alice

        def queries_for_list() -> int:
            client = jwt_client(viewer)
            with CaptureQueriesContext(connection) as queries:
                assert client.get(LIST).status_code == 200
            return len(queries)

        make_session(alice, "Not Started", "In Progress")
        few = queries_for_list()
        for _ in range(5):
            make_session(alice, "Not Started", "In Progress", "Approved")
        assert queries_for_list() == few


class TestDetail:
    def test_owner_sees_the_session_with_its_history(self, alice, jwt_client):
        session = make_session(alice, "Not Started", "In Progress", "Approved")

        response = jwt_client(alice).get(detail(session.session_id))

        assert response.status_code == 200
        body = response.json()
        assert body["session_id"] == session.session_id
        assert body["status"] == "Approved"
        assert body["url"] == session.url
        history = body["history"]
        assert [(h["previous_status"], h["status"]) for h in history] == [
            (None, "Not Started"),
            ("Not Started", "In Progress"),
            ("In Progress", "Approved"),
        ]
        assert set(history[0]) == {"id", "status", "previous_status", "webhook_type", "occurred_at"}
        assert [h["id"] for h in history] == sorted(h["id"] for h in history)

    def test_someone_elses_session_is_404(self, alice, bob, jwt_client):
        theirs = make_session(bob, "Approved")
        response = jwt_client(alice).get(detail(theirs.session_id))
        assert response.status_code == 404
        assert response.json() == jwt_client(alice).get(detail("does-not-exist")).json()

    def test_admin_audience_sees_any_session_without_its_url(
        self, alice, verification_admin, jwt_client
    ):
        session = make_session(alice, "Not Started", "In Review")
        body = jwt_client(verification_admin).get(detail(session.session_id)).json()
        assert body["status"] == "In Review"
        assert body["url"] is None
        assert len(body["history"]) == 2

    def test_no_decision_data_in_the_detail(self, alice, jwt_client):
        session = make_session(alice, "Approved")
        session.decision = {"id_verification": {"document_number": "X1234567"}}
        session.save()
        text = jwt_client(alice).get(detail(session.session_id)).content.decode()
        assert "X1234567" not in text
        assert "decision" not in json.loads(text)

    def test_query_count_does_not_grow_with_the_history(self, alice, jwt_client):
        short = make_session(alice, "Not Started")
        long = make_session(alice, "Not Started", "In Progress", "In Review", "Approved")
        client = jwt_client(alice)

        def queries_for(session) -> int:
            with CaptureQueriesContext(connection) as queries:
                assert client.get(detail(session.session_id)).status_code == 200
            return len(queries)

        assert queries_for(long) == queries_for(short)
