"""The REST API against its published OpenAPI schema, fuzzed by schemathesis.

The schema is fetched from ``/didit/api/schema/`` of the real site (WSGI, in
this process, on the test database) and every operation in it is called with
generated input by a signed-in end user and by an admin (JWT Bearer), with
Didit served by the fake. Every answer must be a documented status code with
a body and content type matching the schema, and never a 5xx other than the
documented 502/503. Path parameters are sometimes swapped for ids of real
sessions, so the 200 answers (history, decisions) are exercised as well as
the 404s.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from didit_channels.state import StatusChange, apply_status_change
from tests.fake_didit import fake_didit  # noqa: F401

pytestmark = pytest.mark.django_db

SCHEMA_PATH = "/didit/api/schema/?format=json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OWN, OTHERS, UNASSIGNED, MISSING = "fuzz-own", "fuzz-others", "fuzz-unassigned", "fuzz-missing"
KNOWN_SESSION_IDS = [OWN, OTHERS, UNASSIGNED, MISSING]
MAX_EXAMPLES = 25  # per operation, mode and caller: the whole module stays well under a minute
DECISION = {"status": "Approved", "id_verification": {"first_name": "Alice", "age": 30}}


@pytest.fixture
def wsgi_app():
    """The site's WSGI handler, keeping the test's database connection between requests.

    Django's test client does the same: closing the connection at the end of a
    request would end the test's transaction.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def record(session_id: str, user, *statuses: str, decision: dict | None = None) -> None:
    start = timezone.now() - timedelta(hours=1)
    for step, status in enumerate(statuses):
        apply_status_change(
            StatusChange(
                session_id=session_id,
                status=status,
                occurred_at=start + timedelta(minutes=step),
                dedupe_key=f"fuzz:{session_id}:{step}",
                user=user,
                url=f"https://verify.didit.me/session/{session_id}",
                decision=decision if step == len(statuses) - 1 else None,
            )
        )


@pytest.fixture(params=["end user", "admin"])
def caller(request, alice, bob, superuser):
    """The user the fuzzer signs in as; the sessions it will find are recorded first."""
    record(OWN, alice, "Not Started", "In Progress", "Approved", decision=DECISION)
    record(OTHERS, bob, "Not Started", "Declined", decision=DECISION)
    record(UNASSIGNED, None, "In Review")
    return alice if request.param == "end user" else superuser


@pytest.fixture
def api_schema(wsgi_app):
    return schemathesis.openapi.from_wsgi(SCHEMA_PATH, wsgi_app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_answer_matches_the_schema(api_schema, caller, mode, fake_didit):  # noqa: F811
    headers = {"Authorization": f"Bearer {AccessToken.for_user(caller)}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 5

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            # Slow, filtered generation is how schemathesis works; not a finding.
            suppress_health_check=list(HealthCheck),
        )
        def call(case, data) -> None:
            if case.path_parameters and "session_id" in case.path_parameters:
                if data.draw(st.booleans(), label="known session"):
                    known = data.draw(st.sampled_from(KNOWN_SESSION_IDS), label="session_id")
                    case.path_parameters["session_id"] = known
            case.call_and_validate(headers=headers, checks=CHECKS)

        call()


def forged_cursor(position: str) -> str:
    return base64.b64encode(f"o=0&p={position}".encode()).decode()


@pytest.mark.parametrize(
    ("path", "parameters"),
    [
        # PostgreSQL text cannot hold NUL: a database error once, now a 404.
        ("/didit/api/sessions/{session_id}/", {"path_parameters": {"session_id": "a\x00b"}}),
        (
            "/didit/api/sessions/{session_id}/decision/",
            {"path_parameters": {"session_id": "a\x00b"}},
        ),
        # A well-encoded cursor whose position is not a datetime: a
        # ValidationError from the database layer once, now DRF's invalid cursor.
        ("/didit/api/sessions/", {"query": {"cursor": forged_cursor("garbage")}}),
        ("/didit/api/sessions/", {"query": {"cursor": forged_cursor("2026-13-45 25:61:00")}}),
        ("/didit/api/sessions/", {"query": {"cursor": forged_cursor("a\x00b")}}),
    ],
    ids=["detail-nul", "decision-nul", "cursor-text", "cursor-bad-date", "cursor-nul"],
)
def test_forged_input_that_once_gave_500_is_a_documented_404(
    api_schema, superuser, path, parameters
):
    case = api_schema[path]["GET"].Case(**parameters)
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {AccessToken.for_user(superuser)}"}, checks=CHECKS
    )
    assert response.status_code == 404


def test_a_real_cursor_still_pages(alice, jwt_client):
    for number in range(3):
        record(f"page-{number}", alice, "Not Started")
    api = jwt_client(alice)
    first = api.get("/didit/api/sessions/?page_size=2").json()
    second = api.get(first["next"]).json()
    seen = [item["session_id"] for item in first["results"] + second["results"]]
    assert seen == ["page-2", "page-1", "page-0"]


def test_the_schema_documents_this_apps_api_only(client):
    document = client.get(SCHEMA_PATH, HTTP_HOST="localhost").json()
    assert set(document["paths"]) == {
        "/didit/api/tickets/",
        "/didit/api/sessions/",
        "/didit/api/sessions/{session_id}/",
        "/didit/api/sessions/{session_id}/decision/",
    }
    assert document["info"]["title"] == "didit_channels API"
    assert set(document["components"]["securitySchemes"]) == {"jwtAuth", "cookieAuth"}
