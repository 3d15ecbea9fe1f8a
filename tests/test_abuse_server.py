"""What a real daphne process does with abusive or outdated WebSocket clients.

The in-process tests (``test_socket.py``) talk to the consumer through
channels' communicator, which accepts any close code and negotiates nothing;
these talk to the server a browser talks to:

* a frame over 4 KiB is closed with the contract's 1009, and one over
  daphne's own message limit (1 MiB) is dropped by the server before it
  reaches the application;
* a socket is closed with 1001 when ``MAX_CONNECTION_AGE_SECONDS`` is up;
* ``permessage-deflate`` is never negotiated (compression next to secrets is
  the CRIME/BREACH pattern), even when the client offers it;
* handshakes of pre-RFC 6455 protocol versions are refused.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.faults_support import daphne_process, fetch_ticket, running_redis, server_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAX_AGE = 3


@pytest.fixture(scope="module")
def server(django_db_setup):
    with running_redis() as redis:
        limits = {"DIDIT_CHANNELS": {"MAX_CONNECTION_AGE_SECONDS": MAX_AGE}}
        env = server_env(redis.url, DIDIT_TEST_SERVER_SETTINGS=json.dumps(limits))
        with daphne_process(env) as site:
            yield site


async def open_socket(server, user, **options):
    ticket = await asyncio.to_thread(fetch_ticket, server.url, user)
    ws = await connect(
        f"{server.ws_url}?ticket={ticket}", origin=server.url, ping_interval=None, **options
    )
    assert json.loads(await ws.recv())["type"] == "hello"
    assert json.loads(await ws.recv())["type"] == "snapshot"
    return ws


async def close_code(ws, timeout: float = 5) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed:
        return ws.close_code


def test_a_frame_over_4_kib_is_closed_with_1009(server, alice):
    async def scenario() -> None:
        ws = await open_socket(server, alice)
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 4096}))
        assert await close_code(ws) == 1009

    asyncio.run(scenario())


def test_a_message_over_the_servers_limit_never_reaches_the_application(server, alice):
    async def scenario() -> None:
        ws = await open_socket(server, alice, max_size=None)
        try:
            await ws.send("x" * (1024 * 1024 + 1))  # daphne's --websocket-max-message-size
        except ConnectionClosed:
            pass  # reset while the client was still writing it: dropped all the same
        # autobahn fails the connection as it reads the frame's length: dropped.
        assert await close_code(ws) in (1006, 1009)

    asyncio.run(scenario())
    assert "a 1048577-byte frame" not in server.log()  # the consumer never saw it


def test_the_socket_is_closed_with_1001_when_its_age_is_up(server, alice):
    async def scenario() -> None:
        ws = await open_socket(server, alice)
        started = asyncio.get_running_loop().time()
        assert await close_code(ws, timeout=MAX_AGE + 5) == 1001
        assert ws.close_reason == "maximum connection age reached"
        assert asyncio.get_running_loop().time() - started <= MAX_AGE + 1

    asyncio.run(scenario())


def test_compression_is_never_negotiated(server, alice):
    async def scenario() -> None:
        ws = await open_socket(server, alice, compression="deflate")  # offers it
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
        await ws.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("version", [None, "0", "7"])
def test_protocol_versions_before_rfc_6455_are_refused(server, alice, version):
    with socket.create_connection(("127.0.0.1", server.port), 5) as sock:
        lines = [
            f"GET /ws/didit/?ticket={fetch_ticket(server.url, alice)} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            f"Origin: {server.url}",
        ]
        if version is not None:
            lines.append(f"Sec-WebSocket-Version: {version}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] in (b"400", b"426"), status_line
