"""Several server processes sharing Redis and the database behave as one site.

Real daphne processes (started by ``scripts/serve_multi.py``) serve the test
database and share the demo's Redis channel layer; real WebSocket clients
talk to them.

* Across processes, addressed one by one: a ticket minted by one process opens
  a socket on another and cannot be spent again on the first; a webhook taken
  by one process reaches the owner's and the admin's sockets on the others;
  deactivating the user in yet another process closes every socket of hers,
  on every process, with 4003, and leaves the admin's open.
* Behind nginx, one address: sockets of one user spread over the processes,
  and a webhook sent to that address reaches all of them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from didit_channels.testing import signed_webhook, status_payload
from tests.conftest import ENCRYPTION_KEY, WEBHOOK_SECRET, service_unavailable
from tests.servers import fetch_ticket, subprocess_database_url

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _load_serve_multi():
    spec = importlib.util.spec_from_file_location("serve_multi", ROOT / "scripts/serve_multi.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("serve_multi", module)
    spec.loader.exec_module(module)
    return module


serve_multi = _load_serve_multi()


@pytest.fixture
def server_env(redis_url) -> dict[str, str]:
    env = {
        "DATABASE_URL": subprocess_database_url(),
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # the JWTs minted here must verify there
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DIDIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DIDIT_ENCRYPTION_KEYS": ENCRYPTION_KEY,
    }
    return env


def post_webhook(base_url: str, owner, session_id: str, status: str = "Approved") -> None:
    payload = status_payload(session_id, status, vendor_data=str(owner.pk))
    body, headers = signed_webhook(payload, WEBHOOK_SECRET)
    response = httpx.post(
        f"{base_url}/didit/webhook/",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


async def open_socket(base_url: str, ticket_value: str):
    """A socket with its hello and snapshot read."""
    ws_url = base_url.replace("http://", "ws://") + f"/ws/didit/?ticket={ticket_value}"
    ws = await connect(ws_url, origin=base_url, ping_interval=None, compression=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["type"] == "hello", hello
    snapshot = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert snapshot["type"] == "snapshot", snapshot
    return ws


async def next_status(ws, session_id: str) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("type") == "status" and frame.get("session_id") == session_id:
            return frame


async def close_code(ws) -> int | None:
    """Wait for the server to close the socket; its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed:
        return ws.close_code


def deactivate_in_another_process(env: dict[str, str], user_pk: int) -> None:
    """Save the user inactive from a fresh Django process of the demo site."""
    code = (
        "from django.contrib.auth import get_user_model; "
        f"u = get_user_model().objects.get(pk={user_pk}); u.is_active = False; u.save()"
    )
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_tickets_delivery_and_revocation_work_across_processes(server_env, alice, superuser):
    with serve_multi.cluster(3, env=server_env, quiet=True, proxy=False) as cluster:
        a, b, c = (cluster.backend_url(i) for i in range(3))

        async def scenario() -> None:
            # A ticket from process A opens a socket on B, once only.
            alice_ticket = fetch_ticket(a, alice)
            alice_on_b = await open_socket(b, alice_ticket)
            reused = await connect(
                a.replace("http://", "ws://") + f"/ws/didit/?ticket={alice_ticket}",
                origin=a,
                ping_interval=None,
            )
            assert await close_code(reused) == 4001

            alice_on_c = await open_socket(c, fetch_ticket(b, alice))
            admin_on_a = await open_socket(a, fetch_ticket(c, superuser))

            # A webhook taken by A reaches the sockets on B and C, and the admin on A.
            session_id = f"multi-{uuid.uuid4().hex[:8]}"
            post_webhook(a, alice, session_id)
            frames = await asyncio.gather(
                next_status(alice_on_b, session_id),
                next_status(alice_on_c, session_id),
                next_status(admin_on_a, session_id),
            )
            assert {frame["status"] for frame in frames} == {"Approved"}
            assert len({frame["id"] for frame in frames}) == 1

            # Deactivated from a fourth process: alice's sockets close on B and C alike.
            await asyncio.to_thread(deactivate_in_another_process, server_env, alice.pk)
            codes = await asyncio.gather(close_code(alice_on_b), close_code(alice_on_c))
            assert codes == [4003, 4003]

            # The admin's socket is untouched.
            await admin_on_a.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(admin_on_a.recv(), 10)) == {"type": "pong"}
            await admin_on_a.close()

        asyncio.run(scenario())


def test_nginx_spreads_sockets_over_processes_and_delivers_through_one_address(server_env, alice):
    if serve_multi.find_nginx() is None:
        service_unavailable(serve_multi.INSTALL_HINT)
    with serve_multi.cluster(2, env=server_env, quiet=True) as cluster:

        async def scenario() -> None:
            tickets = [fetch_ticket(cluster.url, alice) for _ in range(4)]
            sockets = [await open_socket(cluster.url, value) for value in tickets]
            session_id = f"nginx-{uuid.uuid4().hex[:8]}"
            post_webhook(cluster.url, alice, session_id, "In Review")
            frames = await asyncio.gather(*(next_status(ws, session_id) for ws in sockets))
            assert [frame["status"] for frame in frames] == ["In Review"] * 4
            for ws in sockets:
                await ws.close()

        asyncio.run(scenario())
        # least_conn put two of the four long-lived sockets on each process.
        opened = [
            (cluster.workdir / f"access-{i}.log").read_text().count('"WSCONNECT ') for i in range(2)
        ]
        assert opened == [2, 2], opened
