"""The promises under faults, on real servers: Redis, a server process, the database.

Each test runs the demo site in daphne processes on the test database, with
a redis-server of its own to stop, kill and start again (the machine's shared
Redis and PostgreSQL are never touched), and real WebSocket clients that
behave as the README's example: remember the last id, resume after it on
every reconnect. "Nothing missing, nothing doubled" is checked on the ids
each client was given, against the history in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from didit_channels import state_postgres
from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.testing import signed_webhook, status_payload
from tests.conftest import WEBHOOK_SECRET
from tests.faults_support import (
    LiveClient,
    TcpForwarder,
    daphne_process,
    db,
    post_webhook,
    running_redis,
    server_env,
)
from tests.servers import subprocess_database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_redis():
    with running_redis() as redis:
        yield redis


# How a handshake fails while Redis is unreachable: accepted, then closed with
# 1011, whether the layer could not create the socket's channel or the socket
# could not join its groups or be counted (Redis went away in between).
REFUSED_WITHOUT_REDIS = (1011,)


def history_ids(user=None) -> list[int]:
    """The history ids ``user``'s sockets may be given (all of them for None: the admin), in
    order."""
    events = StatusEvent.objects.all() if user is None else StatusEvent.objects.filter(user=user)
    return list(events.order_by("id").values_list("id", flat=True))


def new_session() -> str:
    return f"fault-{uuid.uuid4().hex[:10]}"


async def post(server, owner, status: str = "Approved") -> int:
    """Post a signed webhook for a new session of ``owner``; its history id."""
    session_id = new_session()
    response = await asyncio.to_thread(post_webhook, server.url, owner, session_id, status)
    assert response.status_code == 200, response.text
    return await db(lambda: StatusEvent.objects.get(session__session_id=session_id).pk)


async def reconnect(client: LiveClient, server, timeout: float = 20) -> None:
    """Reconnect (and resume) as a client would, with backoff, until the server takes it."""
    deadline = time.monotonic() + timeout
    while (code := await client.connect(server)) is not None:
        assert code in REFUSED_WITHOUT_REDIS, code
        assert time.monotonic() < deadline, "the server never took the socket back"
        await asyncio.sleep(0.5)


async def live_and_hearing(server, user) -> tuple[LiveClient, int]:
    """A connected client of ``user`` that has heard one change (so the push path works
    before the fault); the client and that change's id."""
    client = LiveClient(user)
    assert await client.connect(server) is None
    first = await post(server, user)
    assert await client.receive(1) == [first]
    return client, first


def test_webhooks_while_redis_is_down_are_answered_kept_and_resumed_once_in_order(own_redis, alice):
    with daphne_process(server_env(own_redis.url)) as server:

        async def scenario() -> None:
            client, first = await live_and_hearing(server, alice)

            own_redis.stop()
            # Every webhook is still answered 200 and is in the history.
            during = [await post(server, alice, status) for status in ("In Review", "Approved")]
            during += [await post(server, alice, "Declined") for _ in range(3)]
            assert await db(history_ids, alice) == [first, *during]
            # No socket opens without Redis: the channel layer cannot give it a
            # channel, and the handshake is refused (1011); the client retries.
            assert await LiveClient(alice).connect(server) in REFUSED_WITHOUT_REDIS

            own_redis.start()
            # The old socket missed the pushes; the client reconnects and resumes.
            await client.close()
            await reconnect(client, server)
            assert client.ids == [first, *during]
            # And the live stream works again on the new socket.
            after = await post(server, alice)
            assert await client.receive(1) == [after]
            assert client.ids == await db(history_ids, alice)
            await client.close()

        asyncio.run(scenario())
        # Every refusal was the consumer's own, none a crash the server answered.
        assert "Exception inside application" not in server.log()


def test_redis_restarted_under_open_sockets_leaves_none_deaf(own_redis, alice, bob, superuser):
    env = server_env(own_redis.url)
    with daphne_process(env) as a, daphne_process(env) as b:

        async def scenario() -> None:
            clients = {
                "alice on A": (LiveClient(alice), a),
                "alice on B": (LiveClient(alice), b),
                "bob on B": (LiveClient(bob), b),
                "admin on A": (LiveClient(superuser), a),
            }
            for client, server in clients.values():
                assert await client.connect(server) is None
            await post(a, alice)
            await post(b, bob)

            # Killed (no goodbye to its subscribers) and back on the same port,
            # empty; the webhooks in between are pushed into the void.
            own_redis.stop()
            missed = [await post(a, alice), await post(b, bob), await post(b, alice)]
            own_redis.start()

            # No webhook comes after: each socket must still hear of every change
            # it may see, or be closed so its client reconnects and resumes. What
            # it must not do is stay open and silent.
            for name, (client, server) in clients.items():
                user = None if client.user == superuser else client.user
                visible = await db(history_ids, user)
                outcome = await client.receive(len(visible) - len(client.ids), timeout=20)
                if isinstance(outcome, int):  # closed: the client comes back
                    await reconnect(client, server)
                assert client.ids == visible, name

            # And they keep receiving.
            again = await post(b, alice)
            for name, (client, _) in clients.items():
                if client.user in (alice, superuser):
                    assert await client.receive(1) == [again], name
            assert missed
            for client, _ in clients.values():
                await client.close()

        asyncio.run(scenario())


def test_a_killed_server_process_loses_and_doubles_nothing(own_redis, alice, superuser):
    env = server_env(own_redis.url)
    with daphne_process(env) as a, daphne_process(env) as b:

        async def scenario() -> None:
            user, admin = LiveClient(alice), LiveClient(superuser)
            assert await user.connect(a) is None
            assert await admin.connect(b) is None
            first = await post(a, alice)
            assert await user.receive(1) == [first]
            assert await admin.receive(1) == [first]

            # A dies mid-webhook: killed while taking one (whether it had committed
            # is a race). Its sockets drop; Didit gets no answer and retries.
            session_id = new_session()
            # Didit's retry is the same delivery: same event id, same timestamp.
            delivery = {"event_id": f"ev-{session_id}", "timestamp": int(time.time())}
            in_flight = asyncio.create_task(
                asyncio.to_thread(post_webhook, a.url, alice, session_id, "In Review", **delivery)
            )
            await asyncio.sleep(0.05)
            a.kill()
            assert await user.until_closed() == 1006

            # The retry, and more changes, land on the process that is up.
            retried = await asyncio.to_thread(
                post_webhook, b.url, alice, session_id, "In Review", **delivery
            )
            assert retried.status_code == 200, retried.text
            while_down = [await post(b, alice), await post(b, alice, "Declined")]

            a.start()  # on the same address, as a process manager would restart it
            with contextlib.suppress(httpx.HTTPError):
                # Unanswered, or answered by the new A if it was still queued to connect.
                await in_flight
            await reconnect(user, a)
            after = await post(a, alice)
            assert await user.receive(1) == [after]

            # Exactly one history row for the change A was killed over, and
            # every client has every change it may see, once, in order.
            assert (
                await db(lambda: StatusEvent.objects.filter(session__session_id=session_id).count())
                == 1
            )
            assert user.ids == await db(history_ids, alice)
            assert set(while_down) < set(user.ids)
            everything = await db(history_ids, None)
            outcome = await admin.receive(len(everything) - len(admin.ids), timeout=20)
            assert not isinstance(outcome, int), f"admin socket on B closed ({outcome})"
            assert admin.ids == everything
            await user.close()
            await admin.close()

        asyncio.run(scenario())


def count_rows() -> tuple[int, int, int]:
    return (
        VerificationSession.objects.count(),
        StatusEvent.objects.count(),
        WebhookDelivery.objects.count(),
    )


async def send(server, payload: dict) -> httpx.Response:
    """POST ``payload`` signed now, as Didit (re)tries a delivery."""
    body, headers = signed_webhook(payload, WEBHOOK_SECRET)
    return await asyncio.to_thread(
        httpx.post,
        f"{server.url}/didit/webhook/",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )


def database_url_through(forwarder: TcpForwarder) -> str:
    """The test database, reached through ``forwarder``, in plain text (so the relay
    can see the statements go by)."""
    parts = urlsplit(subprocess_database_url())
    netloc = f"{parts.username or 'postgres'}"
    if parts.password:
        netloc += f":{parts.password}"
    netloc += f"@127.0.0.1:{forwarder.port}"
    return urlunsplit(parts._replace(netloc=netloc, query="sslmode=disable"))


@pytest.mark.postgres
def test_database_unavailable_during_a_webhook_is_500_half_writes_nothing_and_the_retry_applies(
    own_redis, alice
):
    # PostgreSQL only: the database sits behind a TCP relay to cut. (On SQLite,
    # tests/test_webhook.py::TestServerFault injects the same faults in-process.)
    target = urlsplit(subprocess_database_url())
    forwarder = TcpForwarder((target.hostname or "127.0.0.1", target.port or 5432))
    env = server_env(own_redis.url, DATABASE_URL=database_url_through(forwarder))
    try:
        with daphne_process(env) as server:

            async def scenario() -> None:
                client = LiveClient(alice)
                assert await client.connect(server) is None

                # 1. The database cannot be reached at all: 500, and nothing written.
                forwarder.refuse()
                body = status_payload(new_session(), "Approved", vendor_data=str(alice.pk))
                assert (await send(server, body)).status_code == 500
                assert await db(count_rows) == (0, 0, 0)
                forwarder.resume()

                # 2. The connection dies as the webhook is recorded and applied
                # (on PostgreSQL one call, didit_channels_receive_webhook_v1):
                # nothing of it is written, delivery row included, and Didit gets
                # a 500 to retry. (Attempts may first fail earlier, on a pooled
                # connection the outage left dead. A failure inside the call rolls
                # it back whole: tests/test_webhook.py::TestServerFault.)
                forwarder.cut_when(state_postgres.FUNCTION.encode())
                attempts = []
                while not forwarder.cuts:
                    assert len(attempts) < 10, attempts
                    attempts.append((await send(server, body)).status_code)
                    assert attempts[-1] == 500
                    assert await db(count_rows) == (0, 0, 0), "half-written"

                # 3. Didit retries the same delivery until it gets a 200 (the
                # pool may hand out a connection the cut left dead once or twice).
                statuses = []
                while not statuses or statuses[-1] == 500:
                    assert len(statuses) < 10, statuses
                    statuses.append((await send(server, body)).status_code)
                assert statuses[-1] == 200, statuses
                # Once more, as Didit does when an answer is lost: a duplicate.
                assert (await send(server, body)).status_code == 200
                assert (await db(count_rows))[:2] == (1, 1)
                [event] = await db(history_ids, alice)
                assert await client.receive(1) == [event]
                with pytest.raises(TimeoutError):  # and only once
                    await client.receive(1, timeout=2)
                await client.close()

            asyncio.run(scenario())
    finally:
        forwarder.close()


def test_webhooks_while_redis_stalls_are_answered_in_bounded_time_and_caught_up(own_redis, alice):
    """Redis frozen (SIGSTOP: connections open, nothing answered) is worse than Redis
    down: nothing fails, every call waits. A webhook must still be answered, its change
    kept, and the socket must hear of it once Redis is back."""
    with daphne_process(server_env(own_redis.url)) as server:

        async def scenario() -> None:
            client, first = await live_and_hearing(server, alice)

            own_redis.pause()
            try:
                started = time.monotonic()
                during = await asyncio.wait_for(post(server, alice, "In Review"), 15)
                answered_in = time.monotonic() - started
                # A handshake meanwhile is refused by the app (1011: retry), in
                # time, not dropped by daphne's 5 s handshake timeout.
                started = time.monotonic()
                refused = await LiveClient(alice).connect(server)
                refused_in = time.monotonic() - started
            finally:
                own_redis.resume()
            assert answered_in < 4, answered_in  # LAYER_TIMEOUT_SECONDS (2) and the work
            assert refused in REFUSED_WITHOUT_REDIS, refused
            assert refused_in < 5, refused_in
            assert await db(history_ids, alice) == [first, during]

            # Back: the next change arrives, and the one pushed into the stall
            # is caught up first, in order (or the socket closes and resumes).
            after = await post(server, alice, "Approved")
            outcome = await client.receive(2, timeout=10)
            if isinstance(outcome, int):
                await reconnect(client, server)
            assert client.ids == [first, during, after]
            await client.close()

        asyncio.run(scenario())
        assert "Exception inside application" not in server.log()
