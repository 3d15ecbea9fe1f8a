"""The Didit API client, against the fake Didit served over real HTTP."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from didit_channels.client import (
    DiditAPIError,
    DiditClient,
    DiditClientError,
    DiditConnectionError,
    DiditInvalidResponse,
    DiditNotConfigured,
    DiditNotFound,
    DiditRateLimited,
    DiditServerError,
    parse_retry_after,
)
from tests.fake_didit import FAKE_API_KEY, FAKE_WORKFLOW_ID, fake_didit  # noqa: F401

CREATE = "/v3/session/"


def decision_path(session_id: str) -> str:
    return f"/v3/session/{session_id}/decision/"


class SleepRecorder:
    """Stands in for time.sleep so backoff tests run instantly and show the waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def client(fake_didit, sleeps):  # noqa: F811
    return DiditClient.from_settings(sleep=sleeps, backoff_base=0.01)


class TestCreateSession:
    def test_posts_workflow_vendor_data_and_callback_with_the_api_key(self, client, fake_didit):  # noqa: F811
        result = client.create_session("42", callback="https://app.example/didit/status/")

        assert result["status"] == "Not Started"
        assert result["url"].startswith("https://")
        assert result["session_id"] in fake_didit.sessions
        (request,) = fake_didit.requests_to("POST", CREATE)
        assert request.headers["x-api-key"] == FAKE_API_KEY
        assert request.headers["content-type"] == "application/json"
        assert request.json == {
            "workflow_id": FAKE_WORKFLOW_ID,
            "vendor_data": "42",
            "callback": "https://app.example/didit/status/",
        }

    def test_callback_is_left_out_when_not_given(self, client, fake_didit):  # noqa: F811
        client.create_session("42")
        (request,) = fake_didit.requests_to("POST", CREATE)
        assert "callback" not in request.json

    def test_explicit_workflow_wins_over_the_setting(self, client, fake_didit):  # noqa: F811
        client.create_session("42", workflow_id="other-workflow")
        assert fake_didit.requests_to("POST", CREATE)[0].json["workflow_id"] == "other-workflow"

    def test_without_workflow_raises_not_configured_naming_the_setting(self, fake_didit, settings):  # noqa: F811
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "WORKFLOW_ID": ""}
        with pytest.raises(DiditNotConfigured, match=r'WORKFLOW_ID"\] .*DIDIT_WORKFLOW_ID'):
            DiditClient.from_settings().create_session("42")
        assert fake_didit.requests == []


class TestGetDecision:
    def test_returns_the_decision_json(self, client, fake_didit):  # noqa: F811
        session_id = fake_didit.add_session(status="Approved", vendor_data="7")
        decision = client.get_decision(session_id)
        assert decision["status"] == "Approved"
        assert decision["session_id"] == session_id
        (request,) = fake_didit.requests_to("GET", decision_path(session_id))
        assert request.headers["x-api-key"] == FAKE_API_KEY

    def test_unknown_session_is_not_found_without_retrying(self, client, fake_didit, sleeps):  # noqa: F811
        with pytest.raises(DiditNotFound) as caught:
            client.get_decision("no-such-session")
        assert caught.value.status_code == 404
        assert isinstance(caught.value, DiditClientError)
        assert len(fake_didit.requests) == 1
        assert sleeps.waits == []

    def test_session_id_cannot_escape_its_path(self, client, fake_didit):  # noqa: F811
        with pytest.raises(DiditNotFound):
            client.get_decision("../../v3/session")
        assert fake_didit.requests[0].path == "/v3/session/..%2F..%2Fv3%2Fsession/decision/"

    def test_empty_session_id_is_refused_before_any_request(self, client, fake_didit):  # noqa: F811
        with pytest.raises(ValueError):
            client.get_decision("")
        assert fake_didit.requests == []


class TestConfiguration:
    def test_no_api_key_raises_not_configured_naming_the_settings(self, settings, monkeypatch):
        monkeypatch.delenv("DIDIT_API_KEY", raising=False)
        settings.DIDIT_CHANNELS = {}
        with pytest.raises(DiditNotConfigured, match=r'API_KEY"\] .*DIDIT_API_KEY'):
            DiditClient.from_settings()

    def test_not_configured_is_a_didit_api_error(self):
        assert issubclass(DiditNotConfigured, DiditAPIError)

    def test_environment_variables_configure_the_client(self, settings, monkeypatch):
        settings.DIDIT_CHANNELS = {}
        monkeypatch.setenv("DIDIT_API_KEY", "env-key")
        monkeypatch.setenv("DIDIT_WORKFLOW_ID", "env-workflow")
        monkeypatch.setenv("DIDIT_API_BASE_URL", "http://127.0.0.1:9/")
        client = DiditClient.from_settings()
        assert (client.base_url, client.workflow_id) == ("http://127.0.0.1:9", "env-workflow")

    def test_repr_does_not_show_the_key(self, client):
        assert FAKE_API_KEY not in repr(client)


class TestWrongKey:
    def test_wrong_key_is_a_client_error_and_not_retried(self, fake_didit, sleeps):  # noqa: F811
        client = DiditClient.from_settings(sleep=sleeps)
        client._api_key = "wrong-key"
        with pytest.raises(DiditClientError) as caught:
            client.get_decision(fake_didit.add_session())
        assert caught.value.status_code == 401
        assert caught.value.detail == "Invalid API key."
        assert "wrong-key" not in str(caught.value)
        assert len(fake_didit.requests) == 1


class TestRetries:
    def test_5xx_then_success_is_retried(self, client, fake_didit, sleeps):  # noqa: F811
        session_id = fake_didit.add_session(status="In Review")
        path = decision_path(session_id)
        fake_didit.queue("GET", path, 502)
        fake_didit.queue("GET", path, 503)
        fake_didit.queue("GET", path, 200, json={"session_id": session_id, "status": "In Review"})

        assert client.get_decision(session_id)["status"] == "In Review"
        assert len(fake_didit.requests_to("GET", path)) == 3
        assert len(sleeps.waits) == 2

    def test_persistent_5xx_stops_after_max_retries(self, fake_didit, settings, sleeps):  # noqa: F811
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "API_MAX_RETRIES": 2}
        client = DiditClient.from_settings(sleep=sleeps, backoff_base=0.01)
        fake_didit.queue("GET", decision_path("s1"), 500, json={"detail": "boom"})

        with pytest.raises(DiditServerError) as caught:
            client.get_decision("s1")
        assert caught.value.status_code == 500
        assert caught.value.detail == "boom"
        assert len(fake_didit.requests) == 3  # the first try and two retries
        assert len(sleeps.waits) == 2

    def test_zero_retries_means_one_request(self, fake_didit, sleeps):  # noqa: F811
        client = DiditClient.from_settings(sleep=sleeps, max_retries=0)
        fake_didit.queue("POST", CREATE, 503)
        with pytest.raises(DiditServerError):
            client.create_session("1")
        assert len(fake_didit.requests) == 1

    def test_429_waits_as_long_as_retry_after_says(self, client, fake_didit, sleeps):  # noqa: F811
        fake_didit.queue("POST", CREATE, 429, headers={"Retry-After": "1.5"})
        fake_didit.queue("POST", CREATE, 201, json={"session_id": "s", "url": "https://x"})

        assert client.create_session("42")["session_id"] == "s"
        assert len(sleeps.waits) == 1
        assert 1.5 <= sleeps.waits[0] <= 2.0

    def test_retry_after_is_honoured_on_the_wire(self, fake_didit):  # noqa: F811
        """With the real sleep: the retry reaches the server no sooner than asked."""
        path = decision_path("s1")
        fake_didit.queue("GET", path, 429, headers={"Retry-After": "1"})
        fake_didit.queue("GET", path, 200, json={"session_id": "s1", "status": "Approved"})

        DiditClient.from_settings().get_decision("s1")
        first, second = fake_didit.requests_to("GET", path)
        assert second.at - first.at >= 1.0

    def test_retry_after_as_http_date(self, client, fake_didit, sleeps):  # noqa: F811
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
        fake_didit.queue("GET", decision_path("s1"), 429, headers={"Retry-After": when})
        fake_didit.queue("GET", decision_path("s1"), 200, json={"status": "Approved"})
        client.get_decision("s1")
        assert 0.5 <= sleeps.waits[0] <= 2.0

    def test_retry_after_over_the_cap_fails_at_once(self, client, fake_didit, sleeps):  # noqa: F811
        fake_didit.queue("GET", decision_path("s1"), 429, headers={"Retry-After": "3600"})

        with pytest.raises(DiditRateLimited) as caught:
            client.get_decision("s1")
        assert caught.value.retry_after == 3600
        assert sleeps.waits == []
        assert len(fake_didit.requests) == 1

    def test_persistent_429_raises_rate_limited(self, client, fake_didit, sleeps):  # noqa: F811
        fake_didit.queue("GET", decision_path("s1"), 429, headers={"Retry-After": "0"})
        with pytest.raises(DiditRateLimited) as caught:
            client.get_decision("s1")
        assert caught.value.status_code == 429
        assert len(fake_didit.requests) == 1 + client.max_retries

    def test_backoff_without_retry_after_is_capped(self, fake_didit, sleeps):  # noqa: F811
        client = DiditClient.from_settings(sleep=sleeps, backoff_base=100, max_retry_wait=0.25)
        fake_didit.queue("GET", decision_path("s1"), 503)
        with pytest.raises(DiditServerError):
            client.get_decision("s1")
        assert sleeps.waits and max(sleeps.waits) <= 0.25

    def test_4xx_is_not_retried(self, client, fake_didit, sleeps):  # noqa: F811
        fake_didit.queue("POST", CREATE, 400, json={"detail": "Insufficient credits."})
        with pytest.raises(DiditClientError) as caught:
            client.create_session("42")
        assert caught.value.detail == "Insufficient credits."
        assert len(fake_didit.requests) == 1
        assert sleeps.waits == []

    def test_calls_inside_with_reuse_one_connection(self, fake_didit, sleeps):  # noqa: F811
        session_id = fake_didit.add_session(status="Approved")
        with DiditClient.from_settings(sleep=sleeps) as client:
            for _ in range(3):
                client.get_decision(session_id)
        assert len({request.client_port for request in fake_didit.requests}) == 1

    def test_calls_without_with_open_and_close_their_own_connection(self, client, fake_didit):  # noqa: F811
        session_id = fake_didit.add_session(status="Approved")
        client.get_decision(session_id)
        client.get_decision(session_id)
        assert len({request.client_port for request in fake_didit.requests}) == 2


class TestFailuresOnTheWire:
    def test_timeout_is_a_connection_error(self, fake_didit, sleeps):  # noqa: F811
        fake_didit.queue("GET", decision_path("slow"), 200, json={"status": "x"}, delay=1.0)
        client = DiditClient.from_settings(sleep=sleeps, timeout=0.2, max_retries=1)
        with pytest.raises(DiditConnectionError, match="in time"):
            client.get_decision("slow")
        assert len(fake_didit.requests) == 2

    def test_refused_connection_is_a_connection_error(self, sleeps):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # Nothing listens on the port any more.
        client = DiditClient(
            "key", base_url=f"http://127.0.0.1:{port}", max_retries=1, sleep=sleeps
        )
        with pytest.raises(DiditConnectionError):
            client.get_decision("s1")
        assert len(sleeps.waits) == 1

    @pytest.mark.parametrize(
        "body,content_type",
        [(b"<html>oops</html>", "text/html"), (b"[1, 2]", "application/json")],
    )
    def test_2xx_that_is_not_a_json_object_is_invalid(
        self,
        client,
        fake_didit,  # noqa: F811
        body,
        content_type,
    ):
        fake_didit.queue(
            "GET", decision_path("s1"), 200, body=body, headers={"Content-Type": content_type}
        )
        with pytest.raises(DiditInvalidResponse):
            client.get_decision("s1")

    def test_redirects_are_not_followed(self, client, fake_didit):  # noqa: F811
        fake_didit.queue(
            "GET", decision_path("s1"), 302, headers={"Location": "http://127.0.0.1:9/steal"}
        )
        with pytest.raises(DiditClientError):
            client.get_decision("s1")
        assert len(fake_didit.requests) == 1


class TestLogging:
    def test_the_api_key_never_reaches_the_logs(self, fake_didit, sleeps, caplog):  # noqa: F811
        client = DiditClient.from_settings(sleep=sleeps, backoff_base=0.01)
        fake_didit.queue("GET", decision_path("s1"), 503)
        caplog.set_level(logging.DEBUG)
        with pytest.raises(DiditServerError) as caught:
            client.get_decision("s1")
        assert "retry 1 of 3" in caplog.text
        assert FAKE_API_KEY not in caplog.text
        assert FAKE_API_KEY not in str(caught.value)


class TestParseRetryAfter:
    now = datetime(2025, 1, 1, tzinfo=UTC)

    @pytest.mark.parametrize(
        "value,expected",
        [
            ("3", 3.0),
            (" 0 ", 0.0),
            ("-5", 0.0),
            ("Wed, 01 Jan 2025 00:00:10 GMT", 10.0),
            ("Tue, 31 Dec 2024 00:00:00 GMT", 0.0),
            ("soon", None),
            ("", None),
            (None, None),
        ],
    )
    def test_values(self, value, expected):
        assert parse_retry_after(value, now=self.now) == expected
