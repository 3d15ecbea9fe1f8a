"""resume: every event after the given id that the connection may see, in order, then resumed.

Includes the PostgreSQL hazard: a transaction holding a lower id that commits
after one holding a higher id must not be skipped by a client that resumes.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from didit_channels.live import stream
from didit_channels.live.testing import open_socket
from didit_channels.signals import session_status_changed
from project.asgi import application
from tests.conftest import apply_now, order_lock_waiters

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("any_layer", "fast_password_hashing"),
]


change = database_sync_to_async(apply_now)


async def replay(socket, after: int) -> tuple[list[dict], dict]:
    await socket.send_json_to({"type": "resume", "after": after})
    frames = []
    while (frame := await socket.receive_json_from(3))["type"] == "status":
        frames.append(frame)
    return frames, frame


async def test_resume_replays_own_events_after_the_id_in_order(alice, bob):
    first = await change("a-1", "In Progress", user=alice)
    await change("b-1", "In Progress", user=bob)
    second = await change("a-2", "In Review", user=alice)
    third = await change("a-1", "Approved", user=alice)
    socket, hello, _ = await open_socket(application, alice)

    frames, resumed = await replay(socket, 0)
    assert [f["id"] for f in frames] == [first.pk, second.pk, third.pk]
    assert resumed == {"type": "resumed", "cursor": hello["cursor"]}

    frames, _ = await replay(socket, first.pk)
    assert [f["id"] for f in frames] == [second.pk, third.pk]
    await socket.disconnect()


async def test_admin_resume_replays_every_session(alice, bob, superuser):
    events = [
        await change("a-1", "In Progress", user=alice),
        await change("b-1", "In Progress", user=bob),
        await change("nobody", "Approved"),
    ]
    socket, _, _ = await open_socket(application, superuser)
    frames, _ = await replay(socket, 0)
    assert [f["id"] for f in frames] == [e.pk for e in events]
    await socket.disconnect()


async def test_resume_beyond_the_newest_event_replays_nothing(alice):
    await change("a-1", "In Progress", user=alice)
    socket, hello, _ = await open_socket(application, alice)
    frames, resumed = await replay(socket, hello["cursor"] + 1000)
    assert frames == []
    assert resumed == {"type": "resumed", "cursor": hello["cursor"]}
    await socket.disconnect()


async def test_long_replay_is_read_in_batches_without_gaps(alice, monkeypatch):
    monkeypatch.setattr(stream, "BATCH_SIZE", 2)
    events = [await change(f"a-{i}", "In Progress", user=alice) for i in range(5)]
    socket, _, _ = await open_socket(application, alice)
    frames, resumed = await replay(socket, 0)
    assert [f["id"] for f in frames] == [e.pk for e in events]
    assert resumed["cursor"] == events[-1].pk
    await socket.disconnect()


async def test_live_events_during_a_replay_come_after_it_once(alice):
    socket, hello, _ = await open_socket(application, alice)
    earlier = await change("a-1", "In Progress", user=alice)
    assert (await socket.receive_json_from())["id"] == earlier.pk
    await socket.send_json_to({"type": "resume", "after": hello["cursor"]})
    later = await change("a-1", "Approved", user=alice)
    received = [await socket.receive_json_from(3)]
    while received[-1]["type"] != "resumed":
        received.append(await socket.receive_json_from(3))
    if later.pk not in [f.get("id") for f in received]:
        received.append(await socket.receive_json_from(3))
    assert await socket.receive_nothing(0.2)
    # The replay (which may already carry the later change), then resumed, then
    # the later change only if the replay did not carry it: never twice.
    assert [(f["type"], f.get("id")) for f in received] in (
        [("status", earlier.pk), ("resumed", None), ("status", later.pk)],
        [("status", earlier.pk), ("status", later.pk), ("resumed", None)],
    )
    await socket.disconnect()


async def test_resumed_cursor_lets_a_new_socket_pick_up_where_the_old_left(alice):
    socket, _, _ = await open_socket(application, alice)
    await change("a-1", "In Progress", user=alice)
    cursor = (await socket.receive_json_from())["id"]
    await socket.disconnect()
    missed = await change("a-1", "Approved", user=alice)  # while disconnected
    again, _, _ = await open_socket(application, alice)
    frames, resumed = await replay(again, cursor)
    assert [f["id"] for f in frames] == [missed.pk]
    assert resumed["cursor"] >= missed.pk
    await again.disconnect()


@pytest.mark.postgres
async def test_resuming_client_never_skips_a_lower_id_that_commits_late(alice):
    """A transaction holding a lower id is paused before commit while another
    tries to commit a higher one. Nothing above the paused id may become
    visible first: a client that resumes meanwhile is told a cursor below it,
    and the two events then arrive lower id first."""
    socket, hello, _ = await open_socket(application, alice)
    start = hello["cursor"]
    paused, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_slow_commit(sender, session, **kwargs):
        if session.session_id == "slow":
            paused.set()
            release.wait(20)

    def run(session_id: str) -> None:
        try:
            apply_now(session_id, "Approved", user=alice)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    session_status_changed.connect(hold_slow_commit, weak=False)
    slow = threading.Thread(target=run, args=("slow",))
    fast = threading.Thread(target=run, args=("fast",))
    try:
        slow.start()
        assert await asyncio.to_thread(paused.wait, 10), "the slow change never reached its pause"
        fast.start()
        deadline = time.monotonic() + 10
        while await database_sync_to_async(order_lock_waiters)() < 1:
            assert time.monotonic() < deadline, "the fast change never queued behind the slow one"
            await asyncio.sleep(0.02)

        # While the lower id is uncommitted, the higher one is not visible either.
        frames, resumed = await replay(socket, start)
        assert frames == [] and resumed["cursor"] == start
        assert await socket.receive_nothing(0.2)
    finally:
        release.set()
        await asyncio.to_thread(slow.join, 20)
        await asyncio.to_thread(fast.join, 20)
        session_status_changed.disconnect(hold_slow_commit)
    assert not errors

    live = [await socket.receive_json_from(3) for _ in range(2)]
    assert [f["session_id"] for f in live] == ["slow", "fast"]
    assert live[0]["id"] < live[1]["id"]
    # And a client reconnecting from the cursor it was given gets both, in order.
    frames, _ = await replay(socket, resumed["cursor"])
    assert [f["id"] for f in frames] == [f["id"] for f in live]
    await socket.disconnect()
