"""Two real daphne processes sharing Redis and the test database behave as one site.

One test, because starting servers is slow: a ticket fetched from process A
opens a socket on process B and is then spent everywhere; a browser-style
handshake from a foreign origin gets HTTP 403 from a real server; the
per-user socket cap counts sockets on both processes; a signed webhook posted
to A reaches the owner's socket on B; deactivating the user closes her sockets
on both processes with 4003 and leaves other users' sockets open.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import uuid
from pathlib import Path
from unittest import mock

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from didit_channels.testing import signed_webhook, status_payload
from tests.servers import daphne, fetch_ticket, subprocess_database_url

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def site_channel_layers(env: dict[str, str]) -> dict:
    """CHANNEL_LAYERS exactly as the demo site computes it from ``env``."""
    spec = importlib.util.spec_from_file_location("_site_settings", ROOT / "project/settings.py")
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, env):
        spec.loader.exec_module(module)
    return module.CHANNEL_LAYERS


def ws_url(base: str, ticket: str) -> str:
    return base.replace("http://", "ws://") + f"/ws/didit/?ticket={ticket}"


async def open_socket(base: str, ticket: str):
    ws = await connect(ws_url(base, ticket), origin=base, ping_interval=None)
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"
    return ws


async def close_code(ws, timeout: float = 10) -> int | None:
    """The code the server closes ``ws`` with; fails if it sends data instead."""
    with contextlib.suppress(ConnectionClosed):
        frame = await asyncio.wait_for(ws.recv(), timeout)
        pytest.fail(f"expected a close, got {frame}")
    return ws.close_code


async def closed_with(ws) -> int | None:
    """Read (and drop) frames until the server closes ``ws``; its close code."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.recv()
    return ws.close_code


@pytest.fixture
def make_user(django_user_model):
    """Users with random primary keys: the servers' Redis keys (socket counts, groups)
    then never meet those of an earlier or concurrent run on the same Redis."""

    def make(username: str):
        return django_user_model.objects.create_user(
            username, password=None, pk=secrets.randbelow(2**31 - 10**6) + 10**6
        )

    return make


def test_two_server_processes_act_as_one_site(
    redis_url, make_user, settings, webhook_secret, didit_test_settings
):
    alice, bob = make_user("alice"), make_user("bob")
    env = {
        "DATABASE_URL": subprocess_database_url(),
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "1",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # JWTs minted here verify there
        "DIDIT_WEBHOOK_SECRET": webhook_secret,
        "DIDIT_ENCRYPTION_KEYS": didit_test_settings["ENCRYPTION_KEYS"][0],
    }
    # This process publishes revocations on the servers' layer.
    settings.CHANNEL_LAYERS = site_channel_layers(env)
    channel_layers.backends.clear()

    with daphne(env) as a, daphne(env) as b:

        async def scenario() -> None:
            # A ticket from A opens a socket on B, and is then spent on A too.
            ticket = fetch_ticket(a, alice)
            alice_on_b = await open_socket(b, ticket)
            reused = await connect(ws_url(a, ticket), origin=a, ping_interval=None)
            assert await close_code(reused) == 4001  # accepted, then closed: the code arrives

            # A page on another site is refused before accept: HTTP 403.
            with pytest.raises(InvalidStatus) as refused:
                await connect(ws_url(a, fetch_ticket(a, alice)), origin="https://evil.example")
            assert refused.value.response.status_code == 403

            # The cap (10) counts alice's sockets on both processes.
            more = [await open_socket((a, b)[i % 2], fetch_ticket(b, alice)) for i in range(9)]
            over = await connect(ws_url(a, fetch_ticket(a, alice)), origin=a, ping_interval=None)
            assert await close_code(over) == 4008

            bob_on_a = await open_socket(a, fetch_ticket(a, bob))

            # A signed webhook posted to A reaches alice's socket on B.
            session_id = f"multi-{uuid.uuid4().hex[:10]}"
            body, headers = signed_webhook(
                status_payload(session_id, "Approved", vendor_data=str(alice.pk)), webhook_secret
            )
            response = httpx.post(
                f"{a}/didit/webhook/",
                content=body,
                headers={**headers, "Content-Type": "application/json"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            while True:
                frame = json.loads(await asyncio.wait_for(alice_on_b.recv(), 10))
                if frame["type"] == "status" and frame["session_id"] == session_id:
                    break
            assert (frame["status"], frame["user"]) == ("Approved", alice.pk)

            # Deactivated here: every socket of hers, on A and on B, closes with 4003.
            alice.is_active = False
            await database_sync_to_async(alice.save)()
            codes = await asyncio.wait_for(
                asyncio.gather(*(closed_with(ws) for ws in [alice_on_b, *more])),
                timeout=1.0,  # the contract's deadline (measured: tens of milliseconds)
            )
            assert codes == [4003] * 10

            # Bob's socket on A is untouched.
            await bob_on_a.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(bob_on_a.recv(), 10)) == {"type": "pong"}
            await bob_on_a.close()

        asyncio.run(scenario())
    channel_layers.backends.clear()
