"""Logging out closes the sockets that login session opened, and only those.

The login, the ticket request and the logout go through the demo site's real
views (Django's ``LoginView`` session, ``POST /didit/api/tickets/`` with the
session cookie, ``POST /accounts/logout/``); the close travels over the real
layer. Every test runs on the in-memory layer and on real Redis.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.test.client import RequestFactory

from didit_channels.live import tickets
from didit_channels.live.logout import login_session_key
from didit_channels.live.testing import disconnect_all, open_socket
from didit_channels.models import ConnectionTicket
from project.asgi import application
from tests.login_support import Browser, connect, open_from, stays_open, sync

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("any_layer", "fast_password_hashing"),
]

DEADLINE = 1.0
SIGNED_OUT = {"type": "websocket.close", "code": 4003, "reason": "signed out"}


class LoggedInBrowser(Browser):
    def log_out(self) -> None:
        response = self.client.post("/accounts/logout/")
        assert response.status_code in (200, 302), response.status_code


async def browser_of(user) -> LoggedInBrowser:
    return await sync(LoggedInBrowser, user)


async def test_logging_out_closes_that_logins_sockets_only(alice, bob):
    laptop, phone_browser, bobs = (
        await browser_of(alice),
        await browser_of(alice),
        await browser_of(bob),
    )
    first, second = await open_from(laptop), await open_from(laptop)
    other_login = await open_from(phone_browser)
    token_client, _, _ = await open_socket(application, alice)  # a bearer-token client's ticket
    bobs_socket = await open_from(bobs)

    await sync(laptop.log_out)

    assert await first.receive_output(DEADLINE) == SIGNED_OUT
    assert await second.receive_output(DEADLINE) == SIGNED_OUT
    for socket in (other_login, token_client, bobs_socket):
        await stays_open(socket)
    await disconnect_all([first, second, other_login, token_client, bobs_socket])


async def test_a_ticket_fetched_before_the_logout_no_longer_opens_a_socket(alice):
    laptop = await browser_of(alice)
    unused = await sync(laptop.ticket)
    other = await sync((await browser_of(alice)).ticket)

    await sync(laptop.log_out)

    refused = await connect(unused)
    assert await refused.receive_output(DEADLINE) == {"type": "websocket.close", "code": 4001}
    await refused.wait(1)
    # Another login's ticket is untouched.
    socket = await connect(other)
    assert (await socket.receive_json_from(3))["type"] == "hello"
    await socket.disconnect()


async def test_with_the_setting_off_a_logout_leaves_sockets_and_tickets_alone(alice, settings):
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "CLOSE_SOCKETS_ON_LOGOUT": False}
    laptop = await browser_of(alice)
    socket = await open_from(laptop)
    unused = await sync(laptop.ticket)

    await sync(laptop.log_out)

    await stays_open(socket)
    later = await connect(unused)
    assert (await later.receive_json_from(3))["type"] == "hello"
    await disconnect_all([socket, later])


def test_the_ticket_stores_a_hash_of_the_login_never_its_key(alice):
    laptop = Browser(alice)
    laptop.ticket()
    row = ConnectionTicket.objects.get(user=alice)
    assert row.login_hash == tickets.hash_login(laptop.session_key)
    assert len(row.login_hash) == 64
    stored = " ".join(str(value) for value in ConnectionTicket.objects.values_list().get())
    assert laptop.session_key not in stored


def test_a_bearer_token_ticket_has_no_login(alice):
    response = Client().post("/api/token/", {"username": "alice", "password": "alice"})
    access = response.json()["access"]
    answer = Client().post("/didit/api/tickets/", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert answer.status_code == 201
    assert ConnectionTicket.objects.get(user=alice).login_hash == ""


def test_a_session_signed_in_as_someone_else_is_not_the_users_login(alice, bob):
    bobs = Browser(bob)
    request = RequestFactory().get("/")
    request.session = bobs.client.session
    assert request.session[SESSION_KEY] == str(bob.pk)
    assert login_session_key(request, bob) == bobs.session_key
    assert login_session_key(request, alice) is None
    assert login_session_key(request, None) is None
    request.session = None
    assert login_session_key(request, bob) is None


async def test_alogout_closes_them_too(alice):
    from django.contrib.auth import alogout
    from django.contrib.sessions.backends.db import SessionStore

    laptop = await browser_of(alice)
    socket = await open_from(laptop)
    request = RequestFactory().post("/accounts/logout/")
    request.session = await sync(SessionStore, laptop.session_key)
    request.user = alice

    async def auser():  # what AuthenticationMiddleware puts on a request
        return alice

    request.auser = auser

    await alogout(request)

    assert await socket.receive_output(DEADLINE) == SIGNED_OUT
    await socket.wait(1)
