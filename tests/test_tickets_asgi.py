"""The ticket API's fast path for API clients (didit_channels.api.asgi).

Two ways in: through the demo's real ASGI application (``project.asgi``), as
a server would call it, and through ``FastPaths`` around a stand-in for
Django that records whether it was reached — which is how these tests know
which path answered.
"""

from __future__ import annotations

import json

import pytest
from channels.testing import HttpCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from didit_channels.fastpath import FastPaths
from didit_channels.live import tickets
from didit_channels.models import ConnectionTicket

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/didit/api/tickets/"


class Django:
    """Stands in for the site's Django application: answers 299 and counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"django"})


def bearer(user) -> str:
    return f"Bearer {AccessToken.for_user(user)}"


async def call(app, method: str = "POST", body: bytes = b"", **headers: str):
    headers = {"host": "127.0.0.1", **headers}
    pairs = [(name.replace("_", "-").lower().encode(), v.encode()) for name, v in headers.items()]
    communicator = HttpCommunicator(app, method, URL, body=body, headers=pairs)
    response = await communicator.get_response(timeout=10)
    return response["status"], response["body"], dict(response["headers"])


def demo_application():
    from project.asgi import application

    return application


async def test_an_api_client_gets_a_ticket_that_opens_the_socket(alice):
    django = Django()
    status, body, headers = await call(FastPaths(django), authorization=bearer(alice))
    assert (status, django.calls) == (201, 0)  # answered without Django
    answer = json.loads(body)
    assert set(answer) == {"ticket", "expires_in", "url"}
    assert answer["url"] == "/ws/didit/" and answer["expires_in"] == 30
    assert b"no-store" in headers[b"cache-control"]
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-content-type-options"] == b"nosniff"
    access = await tickets_consume(answer["ticket"])
    assert access is not None and access.user_pk == alice.pk


async def tickets_consume(ticket: str):
    from asgiref.sync import sync_to_async

    return await sync_to_async(tickets.consume)(ticket)


@pytest.mark.parametrize(
    "extra",
    [{"cookie": "sessionid=x"}, {"origin": "http://127.0.0.1:8000"}],
    ids=["cookie", "origin"],
)
async def test_browsers_and_cookie_sessions_go_through_django(alice, extra):
    django = Django()
    status, _, _ = await call(FastPaths(django), authorization=bearer(alice), **extra)
    assert (status, django.calls) == (299, 1)


async def test_requests_without_credentials_or_other_methods_go_through_django(alice):
    django = Django()
    assert (await call(FastPaths(django)))[0] == 299
    assert (await call(FastPaths(django), "GET", authorization=bearer(alice)))[0] == 299
    assert (await call(FastPaths(django), "OPTIONS", authorization=bearer(alice)))[0] == 299
    assert django.calls == 3
    assert await ConnectionTicket.objects.acount() == 0


async def test_refusals_are_the_views_own_and_issue_nothing(alice, bob):
    django = Django()
    app = FastPaths(django)
    status, body, headers = await call(app, authorization="Bearer not-a-jwt")
    assert status == 401
    assert json.loads(body)["code"] == "token_not_valid"
    assert headers[b"www-authenticate"].startswith(b"Bearer")

    bob.is_active = False
    await bob.asave()
    status, body, _ = await call(app, authorization=bearer(bob))
    assert status == 401 and json.loads(body)["code"] == "user_inactive"

    status, body, _ = await call(app, body=b"x" * 20_000, authorization=bearer(alice))
    assert status == 413
    assert django.calls == 0
    assert await ConnectionTicket.objects.acount() == 0


async def test_the_throttle_counts_both_paths_together(alice, settings):
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "TICKET_THROTTLE_RATE": "3/min"}
    app = demo_application()
    fast = [(await call(app, authorization=bearer(alice)))[0] for _ in range(2)]
    # With an Origin header the request takes Django's full stack.
    slow, _, _ = await call(app, authorization=bearer(alice), origin="http://127.0.0.1")
    status, _, headers = await call(app, authorization=bearer(alice))
    assert (fast, slow, status) == ([201, 201], 201, 429)
    assert int(headers[b"retry-after"]) > 0
    assert await ConnectionTicket.objects.acount() == 3


async def test_fast_and_django_paths_answer_alike(alice):
    app = demo_application()
    token = bearer(alice)
    for extra in ({}, {"origin": "http://127.0.0.1"}):
        status, body, _ = await call(app, authorization=token, **extra)
        assert status == 201 and set(json.loads(body)) == {"ticket", "expires_in", "url"}
        status, body, _ = await call(app, authorization="Bearer nope", **extra)
        assert (status, json.loads(body)["code"]) == (401, "token_not_valid")


async def test_the_ticket_fast_path_can_be_turned_off(alice):
    from didit_channels.routing import http_application

    django = Django()
    status, _, _ = await call(
        http_application(django, api_tickets=False), authorization=bearer(alice)
    )
    assert (status, django.calls) == (299, 1)


async def test_a_host_outside_allowed_hosts_gets_no_ticket(alice):
    django = Django()
    status, _, _ = await call(FastPaths(django), authorization=bearer(alice), host="evil.example")
    assert (status, django.calls) == (400, 0)
    assert await ConnectionTicket.objects.acount() == 0
