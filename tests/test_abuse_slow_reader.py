"""A client that stops reading is closed; the server does not queue for it without end.

Under daphne an application's ``send`` never waits: what a client does not
read piles up in the connection's buffer. The consumer bounds it
(``MAX_SOCKET_BACKLOG_BYTES``, 1 MiB, ``didit_channels/live/transport.py``).
Raw sockets with a small receive buffer stand in for the clients, against a
real daphne process:

* live pushes: a client that reads its greeting and then nothing is closed
  as soon as its backlog passes the bound (daphne's keep-alive pings would
  take 50 s), while a client of the same user that reads gets every push;
* a history replay (``resume``) goes at the pace of a slow client that
  reads, and closes a client that has stopped.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime

import pytest
from channels.layers import channel_layers, get_channel_layer
from websockets.asyncio.client import connect

from didit_channels.live.consumers import DRAIN_SECONDS
from didit_channels.live.groups import status_message, user_group
from didit_channels.models import StatusEvent, VerificationSession
from tests.faults_support import (
    FrameReader,
    closed_by_server,
    daphne_process,
    fetch_ticket,
    raw_websocket,
    running_redis,
    send_text_frame,
    server_env,
    wait_for,
)
from tests.test_multiprocess import site_channel_layers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_redis():
    with running_redis() as redis:
        yield redis


# Pushes are published in rounds until the server gives up on the stalled
# client; the kernel's buffers take the first few hundred KiB of them.
ROUND = 1_000
MAX_PUSHES = 60_000
NOT_READING = "the client is not reading"
# A small receive window: the kernel holds little on the client's side.
RECEIVE_BUFFER = 4096


def frame(event_id: int, user_pk: int) -> dict:
    """A status frame as state.apply_status_change publishes it."""
    return {
        "type": "status",
        "id": event_id,
        "session_id": f"flood-{event_id:06d}",
        "status": "In Review",
        "previous_status": "In Progress",
        "webhook_type": "status.updated",
        "occurred_at": datetime.now(UTC).isoformat(),
        "user": user_pk,
    }


def open_raw(server, user, receive_buffer: int = RECEIVE_BUFFER, **options):
    """A raw socket past its hello and snapshot: (socket, reader, hello)."""
    sock, rest = raw_websocket(
        server.port,
        f"/ws/didit/?ticket={fetch_ticket(server.url, user)}",
        origin=server.url,
        receive_buffer=receive_buffer,
    )
    reader = FrameReader(sock, rest, **options)
    hello, snapshot = reader.frames(2)
    assert (hello["type"], snapshot["type"]) == ("hello", "snapshot")
    return sock, reader, hello


def test_live_pushes_to_a_client_that_stops_reading_close_it_and_reach_the_others(
    own_redis, alice, settings
):
    env = server_env(own_redis.url)
    settings.CHANNEL_LAYERS = site_channel_layers(env)  # this process publishes on their layer
    channel_layers.backends.clear()
    with daphne_process(env) as server:
        stalled, _, hello = open_raw(server, alice)
        cursor = hello["cursor"]

        async def flood() -> tuple[int, list[int]]:
            reader = await connect(
                f"{server.ws_url}?ticket={fetch_ticket(server.url, alice)}",
                origin=server.url,
                ping_interval=None,
                compression=None,
                max_queue=None,
            )
            await reader.recv()  # hello
            await reader.recv()  # snapshot
            layer, group = get_channel_layer(), user_group(alice.pk)
            received: list[int] = []
            pushed = 0

            async def read(upto: int) -> None:
                while len(received) < upto:
                    received.append(json.loads(await asyncio.wait_for(reader.recv(), 30))["id"])

            while pushed < MAX_PUSHES and NOT_READING not in server.log():
                for event_id in range(cursor + pushed + 1, cursor + pushed + ROUND + 1):
                    message = status_message(frame(event_id, alice.pk), event_id - 1)
                    await layer.group_send(group, message)
                pushed += ROUND
                await read(pushed)  # the reading client keeps up
            await reader.close()
            return pushed, received

        pushed, received = asyncio.run(flood())
        assert NOT_READING in server.log(), f"still open after {pushed} pushes"
        assert received == list(range(cursor + 1, cursor + pushed + 1))
        # Closed (aborted after the close handshake times out), not left to pile up.
        closed, read = closed_by_server(stalled, 10)
        assert closed, f"the stalled socket is still open ({read} bytes read)"
    channel_layers.backends.clear()


def test_a_replay_goes_at_a_slow_clients_pace_and_closes_a_client_that_stopped(own_redis, alice):
    # ~2.6 MB of frames: ten times the bound below.
    events = 18_000
    session = VerificationSession.objects.create(session_id="long-history", user=alice)
    now = datetime.now(UTC)
    StatusEvent.objects.bulk_create(
        StatusEvent(
            session=session,
            user=alice,
            status="In Review",
            previous_status="In Progress",
            webhook_type="status.updated",
            occurred_at=now,
            dedupe_key=f"history-{n}",
        )
        for n in range(events)
    )
    ids = list(StatusEvent.objects.order_by("id").values_list("id", flat=True))

    # A quarter of the default bound, so that a replay this size would overrun
    # it many times over if the server did not wait for the slow client.
    bound = {"DIDIT_CHANNELS": {"MAX_SOCKET_BACKLOG_BYTES": 256 * 1024}}
    env = server_env(own_redis.url, DIDIT_TEST_SERVER_SETTINGS=json.dumps(bound))
    with daphne_process(env) as server:
        stalled, _, _ = open_raw(server, alice)
        # At most 4 MB/s, far slower than the server reads history.
        slow, slow_reader, _ = open_raw(
            server, alice, receive_buffer=65536, chunk=16384, pause=0.02
        )
        replayed: list[int] = []

        def read_slowly() -> None:
            while True:
                frame = slow_reader.next()
                if frame["type"] == "resumed":
                    return
                replayed.append(frame["id"])

        reading = threading.Thread(target=read_slowly)
        started = time.monotonic()
        send_text_frame(stalled, json.dumps({"type": "resume", "after": 0}))
        send_text_frame(slow, json.dumps({"type": "resume", "after": 0}))
        reading.start()
        reading.join(60)
        assert not reading.is_alive(), "the slow client's replay did not finish"
        assert replayed == ids  # every event once, in order: nothing cut it short

        # Reading the stalled socket would un-stall it: first the server gives up on it.
        wait_for(lambda: NOT_READING in server.log(), DRAIN_SECONDS + 10, "the replay to give up")
        assert time.monotonic() - started < DRAIN_SECONDS + 10
        closed, _ = closed_by_server(stalled, 10)
        assert closed, "the stalled socket is still open"
        slow.close()
