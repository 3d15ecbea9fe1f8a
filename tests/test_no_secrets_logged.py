"""No secret reaches a log line or an error response, with every logger at DEBUG.

The full flow runs twice over: in this process through the real ASGI
application (every logger, root and named, at DEBUG and captured, SQL
included), and against a real daphne process (its whole output at DEBUG, its
access log, daphne's own and Twisted's logs included):

JWT login at ``/api/token/`` and a refresh, tickets from the API, sockets
opened with ``?ticket=`` and with the subprotocol, signed webhooks (and an
X-Signature-Simple one whose decision is fetched from Didit with the API
key), a Didit session started through the API; then the errors: a forged
signature, a forged and a spent ticket, an expired JWT, a wrong password, a
wrong API key.

The secrets: the password, both JWTs, every ticket, the webhook secret, the
API key, and every signature sent (valid or forged). None may appear in any
log line, in any error response, or in what a socket is sent before it is
closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import timedelta

import httpx
import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from didit_channels.live.testing import socket_communicator
from didit_channels.testing import signed_webhook, status_payload
from project.asgi import application
from tests.conftest import WEBHOOK_SECRET
from tests.fake_didit import FakeDiditServer, fake_didit  # noqa: F401 - fixture
from tests.faults_support import daphne_process, running_redis, server_env

# With DEBUG on, Django logs every SQL statement with its parameters
# (django.db.backends), and simplejwt's blacklist app stores each refresh token
# it issues verbatim (token_blacklist_outstandingtoken). So the refresh token is
# in the SQL log of a site running with DEBUG: a known caveat of the demo's JWT
# set-up, not of this app (docs/security.md). Nothing else may be.
LOGGED_WITH_SQL = {"refresh JWT"}


class Everything(logging.Handler):
    """Keeps every record, formatted with its traceback and stack."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def every_log_line():
    """Every logger, root and named, at DEBUG into one handler (restored afterwards)."""
    handler = Everything()
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if logger is logging.getLogger() or not logger.propagate:
            logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled
            logger.removeHandler(handler)


class Secrets:
    """Every secret value the flow handles, and every text an outsider could read."""

    def __init__(self, **named: str) -> None:
        self.values: dict[str, str] = dict(named)
        self.exposed: list[tuple[str, str]] = []  # (where, text)

    def add(self, name: str, value: str) -> str:
        assert value, name
        self.values[name] = value
        return value

    def add_signatures(self, headers: dict[str, str], label: str) -> None:
        for header in ("X-Signature-V2", "X-Signature", "X-Signature-Simple"):
            if header in headers:
                self.add(f"{label} {header}", headers[header])

    def expose(self, where: str, text: str) -> None:
        self.exposed.append((where, text))

    def leaks(self, lines: list[str], *, sql_logged: bool = False) -> list[str]:
        found = []
        for name, value in self.values.items():
            if sql_logged and name in LOGGED_WITH_SQL:
                continue
            for where, text in [*(("log", line) for line in lines), *self.exposed]:
                if value in text:
                    found.append(f"{name} in {where}: ...{text[:300]}")
                    break
        return found


def post_webhook_in_process(body: bytes, headers: dict[str, str]):
    return Client().post("/didit/webhook/", body, content_type="application/json", headers=headers)


def error_text(response) -> str:
    content = getattr(response, "content", b"")
    return content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)


# --- in this process ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug-with-sql-log"])
def test_the_whole_flow_in_process_logs_no_secret(
    every_log_line,
    fake_didit,  # noqa: F811
    settings,
    django_user_model,
    debug,
):
    settings.DEBUG = debug  # on: Django logs every SQL statement, parameters included
    cache.clear()  # throttles count per user pk
    settings.DIDIT_CHANNELS = {
        **settings.DIDIT_CHANNELS,
        "WEBHOOK_ALLOW_SIMPLE_SIGNATURE": True,
    }
    password = secrets.token_urlsafe(16)
    user = django_user_model.objects.create_user("carol", password=password)
    found = Secrets(password=password, webhook_secret=WEBHOOK_SECRET, api_key=fake_didit.api_key)
    browser = Client()

    def check(response, status: int, where: str):
        assert response.status_code == status, (where, response.status_code, error_text(response))
        if status >= 400:
            found.expose(where, error_text(response))
        return response

    # Sign in, refresh, fetch tickets.
    tokens = check(
        browser.post(
            "/api/token/",
            {"username": "carol", "password": password},
            content_type="application/json",
        ),
        200,
        "login",
    ).json()
    refresh = found.add("refresh JWT", tokens["refresh"])
    access = found.add("access JWT", tokens["access"])
    refreshed = check(
        browser.post("/api/token/refresh/", {"refresh": refresh}, content_type="application/json"),
        200,
        "refresh",
    ).json()
    found.add("refreshed access JWT", refreshed["access"])
    bearer = {"Authorization": f"Bearer {access}"}
    ticket_query, ticket_subprotocol = (
        found.add(
            f"ticket {n}",
            check(browser.post("/didit/api/tickets/", headers=bearer), 201, "ticket").json()[
                "ticket"
            ],
        )
        for n in (1, 2)
    )

    # Start a Didit session through the API (the client sends the API key).
    started = check(browser.post("/didit/api/sessions/", headers=bearer), 201, "start session")
    session_id = started.json()["session_id"]

    async def sockets() -> None:
        by_query = socket_communicator(application, ticket_query)
        by_subprotocol = socket_communicator(application, ticket_subprotocol, as_subprotocol=True)
        for socket in (by_query, by_subprotocol):
            connected, _ = await socket.connect(3)
            assert connected
            assert (await socket.receive_json_from(3))["type"] == "hello"
            assert (await socket.receive_json_from(3))["type"] == "snapshot"
        # A forged ticket, and a spent one: closed, nothing said.
        for name, ticket in (("forged", secrets.token_urlsafe(32)), ("spent", ticket_query)):
            found.add(f"{name} ticket", ticket)
            refused = socket_communicator(application, ticket)
            await refused.connect(3)
            output = await refused.receive_output(3)
            found.expose(f"{name} ticket socket", json.dumps(output))
            assert output == {"type": "websocket.close", "code": 4001}

        # Webhooks: V2 + raw signatures, then Simple (decision fetched with the API key).
        # Later than the session's start (whole seconds would make it look stale).
        later = int(timezone.now().timestamp()) + 1
        payload = status_payload(session_id, "In Review", vendor_data=str(user.pk), timestamp=later)
        body, headers = signed_webhook(payload, WEBHOOK_SECRET)
        found.add_signatures(headers, "valid")
        response = await database_sync_to_async(post_webhook_in_process)(body, headers)
        check(response, 200, "webhook")
        fake_didit.set_decision(session_id, status="Approved")
        body, headers = signed_webhook(
            status_payload(session_id, "Approved", timestamp=later + 1),
            WEBHOOK_SECRET,
            schemes=("simple",),
        )
        found.add_signatures(headers, "simple")
        response = await database_sync_to_async(post_webhook_in_process)(body, headers)
        check(response, 200, "simple webhook")
        for socket in (by_query, by_subprotocol):
            statuses = [(await socket.receive_json_from(3))["status"] for _ in range(2)]
            assert statuses == ["In Review", "Approved"]
            await socket.disconnect()

    asyncio.run(sockets())

    # Errors.
    forged = {
        "X-Timestamp": str(int(timezone.now().timestamp())),
        "X-Signature-V2": secrets.token_hex(32),
        "X-Signature": secrets.token_hex(32),
    }
    found.add_signatures(forged, "forged")
    body = json.dumps(status_payload(session_id, "Declined")).encode()
    check(
        Client().post("/didit/webhook/", body, content_type="application/json", headers=forged),
        401,
        "forged webhook",
    )
    expired = AccessToken.for_user(user)
    expired.set_exp(from_time=timezone.now() - timedelta(hours=1))
    found.add("expired JWT", str(expired))
    check(
        browser.post("/didit/api/tickets/", headers={"Authorization": f"Bearer {expired}"}),
        401,
        "expired JWT",
    )
    check(
        browser.post(
            "/api/token/",
            {"username": "carol", "password": password + "x"},
            content_type="application/json",
        ),
        401,
        "wrong password",
    )
    wrong_key = found.add("wrong API key", "wrong-" + secrets.token_urlsafe(16))
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "API_KEY": wrong_key}
    check(browser.post("/didit/api/sessions/", headers=bearer), 502, "wrong API key")

    assert any(line.startswith("DEBUG ") for line in every_log_line)  # the capture works
    if debug:
        assert any("django.db.backends" in line for line in every_log_line)
    assert found.leaks(every_log_line, sql_logged=debug) == []


# --- a real daphne process -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_whole_flow_against_daphne_logs_no_secret(django_user_model, settings):
    password = secrets.token_urlsafe(16)
    user = django_user_model.objects.create_user("dave", password=password)
    with FakeDiditServer() as didit, running_redis() as redis:
        env = server_env(
            redis.url,
            DIDIT_TEST_SERVER_SETTINGS=json.dumps({"log_everything": True}),
            DJANGO_DEBUG="1",  # as the demo runs: SQL logged too
            DIDIT_API_KEY=didit.api_key,
            DIDIT_API_BASE_URL=didit.url,
            DIDIT_WORKFLOW_ID="11111111-2222-3333-4444-555555555555",
        )
        found = Secrets(password=password, webhook_secret=WEBHOOK_SECRET, api_key=didit.api_key)
        with daphne_process(env, "-v", "2", access_log=True) as server:
            asyncio.run(daphne_flow(server, user, password, found))
            output = server.log()
            access_log = server.access_log_path.read_text()
    # daphne's access log names every socket, and never its query string.
    assert access_log.count('"WSCONNECT /ws/didit/"') >= 2
    assert "DEBUG django.db.backends" in output  # every logger really was at DEBUG
    assert found.leaks(output.splitlines() + access_log.splitlines(), sql_logged=True) == []


async def daphne_flow(server, user, password: str, found: Secrets) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

        async def call(method: str, path: str, status: int, **options) -> httpx.Response:
            response = await http.request(method, path, **options)
            assert response.status_code == status, (path, response.status_code, response.text)
            if status >= 400:
                found.expose(f"{method} {path}", response.text)
            return response

        tokens = (
            await call("POST", "/api/token/", 200, json={"username": "dave", "password": password})
        ).json()
        access = found.add("access JWT", tokens["access"])
        found.add("refresh JWT", tokens["refresh"])
        bearer = {"Authorization": f"Bearer {access}"}

        issued: list[str] = []

        async def ticket() -> str:
            response = await call("POST", "/didit/api/tickets/", 201, headers=bearer)
            issued.append(found.add(f"ticket {len(issued) + 1}", response.json()["ticket"]))
            return issued[-1]

        session_id = (await call("POST", "/didit/api/sessions/", 201, headers=bearer)).json()[
            "session_id"
        ]
        by_query = await connect(
            f"{server.ws_url}?ticket={await ticket()}", origin=server.url, ping_interval=None
        )
        by_subprotocol = await connect(
            server.ws_url,
            origin=server.url,
            subprotocols=["didit.v1", f"ticket.{await ticket()}"],
            ping_interval=None,
        )
        for ws in (by_query, by_subprotocol):
            assert json.loads(await ws.recv())["type"] == "hello"
            assert json.loads(await ws.recv())["type"] == "snapshot"

        body, headers = signed_webhook(
            status_payload(
                session_id,
                "In Review",
                vendor_data=str(user.pk),
                timestamp=int(timezone.now().timestamp()) + 1,
            ),
            WEBHOOK_SECRET,
        )
        found.add_signatures(headers, "valid")
        await call("POST", "/didit/webhook/", 200, content=body, headers=headers)
        for ws in (by_query, by_subprotocol):
            assert json.loads(await ws.recv())["status"] == "In Review"
            await ws.close()

        forged = {
            "X-Timestamp": headers["X-Timestamp"],
            "X-Signature-V2": secrets.token_hex(32),
            "X-Signature": secrets.token_hex(32),
        }
        found.add_signatures(forged, "forged")
        await call("POST", "/didit/webhook/", 401, content=body, headers=forged)
        for name, value in (("forged", secrets.token_urlsafe(32)), ("spent", issued[0])):
            found.add(f"{name} ticket", value)
            refused = await connect(
                f"{server.ws_url}?ticket={value}", origin=server.url, ping_interval=None
            )
            try:
                extra = await asyncio.wait_for(refused.recv(), 5)
                pytest.fail(f"a refused socket was sent {extra!r}")
            except ConnectionClosed:
                assert refused.close_code == 4001
                found.expose(f"{name} ticket close reason", refused.close_reason or "")
        expired = AccessToken.for_user(user)
        expired.set_exp(from_time=timezone.now() - timedelta(hours=1))
        found.add("expired JWT", str(expired))
        await call(
            "POST", "/didit/api/tickets/", 401, headers={"Authorization": f"Bearer {expired}"}
        )
        await call(
            "POST", "/api/token/", 401, json={"username": "dave", "password": password + "x"}
        )
