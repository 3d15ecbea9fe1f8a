"""Abuse the other tests do not already cover (docs/security.md lists where each case lives).

* Tokens: an expired JWT, a refresh token passed off as an access token, and
  a blacklisted refresh token get no ticket and no new token.
* Cross-site WebSocket hijacking: a signed-in browser's session cookie alone
  opens no socket; only a ticket does.
* Guessed tickets: the database is only ever asked about a ticket's SHA-256,
  so a guess close to a real ticket is no closer to it there, and a wrong
  guess does not spend the real one.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from didit_channels.live import tickets
from didit_channels.live.testing import socket_communicator
from didit_channels.models import ConnectionTicket
from project.asgi import application

TICKETS = "/didit/api/tickets/"


@pytest.fixture(autouse=True)
def fresh_throttle(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


def bearer(token) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


class TestTokens:
    def test_an_expired_access_token_gets_no_ticket(self, alice):
        token = AccessToken.for_user(alice)
        token.set_exp(from_time=timezone.now() - timedelta(hours=1))
        response = bearer(token).post(TICKETS)
        assert response.status_code == 401
        assert str(token) not in response.content.decode()
        assert not ConnectionTicket.objects.exists()

    def test_a_refresh_token_is_not_an_access_token(self, alice):
        response = bearer(RefreshToken.for_user(alice)).post(TICKETS)
        assert response.status_code == 401
        assert not ConnectionTicket.objects.exists()

    def test_a_blacklisted_refresh_token_mints_nothing(self, alice):
        refresh = RefreshToken.for_user(alice)
        refresh.blacklist()  # what a logout does with simplejwt's blacklist app
        response = APIClient().post("/api/token/refresh/", {"refresh": str(refresh)})
        assert response.status_code == 401
        assert "access" not in response.json()

    def test_caveat_an_access_token_outlives_its_blacklisted_refresh_token(self, alice, settings):
        # simplejwt checks the blacklist for refresh tokens only: an access token
        # already handed out keeps opening tickets until it expires
        # (ACCESS_TOKEN_LIFETIME, 5 minutes by default). docs/security.md says so.
        refresh = RefreshToken.for_user(alice)
        access = refresh.access_token
        refresh.blacklist()
        assert bearer(access).post(TICKETS).status_code == 201


@pytest.mark.django_db(transaction=True)
async def test_a_session_cookie_alone_opens_no_socket(alice, client):
    """A page on another site cannot ride the user's cookie: without a ticket, 4001."""
    await client.aforce_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = socket_communicator(application, origin="http://localhost")
    socket.scope["headers"].append((b"cookie", cookie))
    connected, _ = await socket.connect(3)
    assert connected  # accepted, so that a browser would see the code
    assert await socket.receive_output(3) == {"type": "websocket.close", "code": 4001}


class TestGuessedTickets:
    def test_the_database_sees_only_the_hash(self, alice):
        real = tickets.issue(alice).ticket
        near_miss = real[:-1] + ("A" if real[-1] != "A" else "B")
        with CaptureQueriesContext(connection) as queries:
            assert tickets.consume(near_miss) is None
            assert tickets.consume(real) is not None
        sent = " ".join(query["sql"] for query in queries.captured_queries)
        assert real not in sent and near_miss not in sent
        assert tickets.hash_ticket(real) in sent and tickets.hash_ticket(near_miss) in sent
        # One character apart as tickets, nothing alike as what is looked up.
        common = os.path.commonprefix([tickets.hash_ticket(real), tickets.hash_ticket(near_miss)])
        assert len(common) < 8

    def test_a_wrong_guess_does_not_spend_the_real_ticket(self, alice):
        real = tickets.issue(alice).ticket
        for guess in (real[:-1], real + "x", real.upper(), "x" * len(real)):
            assert tickets.consume(guess) is None
        assert tickets.consume(real) is not None
