"""The socket's handshake and hygiene, through the real ASGI application.

Every test runs on the in-memory layer and on real Redis (``any_layer``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from didit_channels.live import tickets
from didit_channels.live.testing import (
    aissue_ticket,
    disconnect_all,
    open_socket,
    socket_communicator,
)
from didit_channels.models import ConnectionTicket
from project.asgi import application

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("any_layer", "fast_password_hashing"),
]


def configure(settings, **values) -> None:
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, **values}


async def assert_closed_before_any_data(communicator, code: int) -> None:
    """Accepted (so a browser sees the code), then closed with ``code``, nothing sent."""
    message = await communicator.receive_output(2)
    assert message == {"type": "websocket.close", "code": code}
    assert await communicator.receive_nothing(0.1)


async def expect_close(communicator, code: int, timeout: float = 2) -> None:
    message = await communicator.receive_output(timeout)
    while message["type"] == "websocket.send":
        message = await communicator.receive_output(timeout)
    assert message["type"] == "websocket.close"
    assert message.get("code") == code


class TestHandshake:
    async def test_ticket_in_query_string_opens_the_socket(self, alice):
        socket, hello, snapshot = await open_socket(application, alice)
        assert hello == {"type": "hello", "user": alice.pk, "audiences": ["user"], "cursor": 0}
        assert snapshot == {"type": "snapshot", "sessions": []}
        await socket.disconnect()

    async def test_ticket_as_subprotocol_selects_didit_v1(self, alice):
        ticket = await aissue_ticket(alice)
        socket = socket_communicator(application, ticket, as_subprotocol=True)
        assert await socket.connect() == (True, "didit.v1")
        assert (await socket.receive_json_from())["type"] == "hello"
        await socket.disconnect()

    async def test_superuser_is_greeted_with_both_audiences(self, superuser):
        socket, hello, _ = await open_socket(application, superuser)
        assert hello["audiences"] == ["user", "admin"]
        await socket.disconnect()

    async def test_missing_or_unknown_ticket_is_accepted_then_closed_4001(self, alice):
        for ticket in (None, "", "unknown-ticket"):
            socket = socket_communicator(application, ticket)
            connected, _ = await socket.connect()
            assert connected
            await assert_closed_before_any_data(socket, 4001)

    async def test_unknown_ticket_as_subprotocol_is_closed_4001(self, alice):
        socket = socket_communicator(application, "nope", as_subprotocol=True)
        assert await socket.connect() == (True, "didit.v1")
        await assert_closed_before_any_data(socket, 4001)

    async def test_expired_ticket_is_closed_4001(self, alice):
        ticket = await aissue_ticket(alice)
        await database_sync_to_async(ConnectionTicket.objects.update)(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        socket = socket_communicator(application, ticket)
        assert (await socket.connect())[0]
        await assert_closed_before_any_data(socket, 4001)

    async def test_used_ticket_is_closed_4001(self, alice):
        ticket = await aissue_ticket(alice)
        first = socket_communicator(application, ticket)
        assert (await first.connect())[0]
        assert (await first.receive_json_from())["type"] == "hello"
        second = socket_communicator(application, ticket)
        assert (await second.connect())[0]
        await assert_closed_before_any_data(second, 4001)
        await first.disconnect()

    async def test_two_sockets_racing_with_one_ticket_admit_exactly_one(self, alice):
        ticket = await aissue_ticket(alice)
        sockets = [socket_communicator(application, ticket) for _ in range(4)]
        # All four handshakes are in flight before any answer is read.
        for socket in sockets:
            await socket.send_input({"type": "websocket.connect"})
        answers = [await socket.receive_output(3) for socket in sockets]
        assert all(answer["type"] == "websocket.accept" for answer in answers)
        first_frames = [await socket.receive_output(3) for socket in sockets]
        admitted = [f for f in first_frames if f["type"] == "websocket.send"]
        refused = [f for f in first_frames if f["type"] == "websocket.close"]
        assert len(admitted) == 1 and json.loads(admitted[0]["text"])["type"] == "hello"
        assert [f["code"] for f in refused] == [4001] * 3
        await disconnect_all(sockets)

    async def test_ticket_of_a_user_deactivated_since_is_closed_4003(self, alice):
        ticket = await aissue_ticket(alice)
        alice.is_active = False
        await database_sync_to_async(alice.save)()
        socket = socket_communicator(application, ticket)
        assert (await socket.connect())[0]
        await assert_closed_before_any_data(socket, 4003)

    async def test_bound_ticket_from_another_address_is_closed_4001(self, alice, settings):
        configure(settings, TICKET_BIND_CLIENT_IP=True)
        from didit_channels.live import tickets

        ticket = (await database_sync_to_async(tickets.issue)(alice, client_ip="10.1.1.1")).ticket
        socket = socket_communicator(application, ticket, client=("10.2.2.2", 4000))
        assert (await socket.connect())[0]
        await assert_closed_before_any_data(socket, 4001)
        socket, _, _ = await open_socket(application, alice, client=("10.1.1.1", 4000))
        await socket.disconnect()


class TestOrigin:
    async def test_own_origin_is_allowed(self, alice):
        socket, _, _ = await open_socket(application, alice, origin="http://localhost:8000")
        await socket.disconnect()

    async def test_foreign_origin_is_refused_before_accept_and_keeps_the_ticket(self, alice):
        ticket = await aissue_ticket(alice)
        for origin in ("https://evil.example", "null", "not a url", "http://localhost.evil"):
            socket = socket_communicator(application, ticket, origin=origin)
            connected, _ = await socket.connect()
            assert not connected, origin  # a close before accept: HTTP 403 in a browser
        # The ticket never reached the consumer: still good from the right page.
        socket = socket_communicator(application, ticket, origin="http://127.0.0.1:8000")
        assert (await socket.connect())[0]
        assert (await socket.receive_json_from())["type"] == "hello"
        await socket.disconnect()

    async def test_wildcard_allowed_hosts_allows_no_origin(self, alice, settings):
        settings.ALLOWED_HOSTS = ["*"]
        for origin in ("https://evil.example", "http://localhost"):
            socket = socket_communicator(application, await aissue_ticket(alice), origin=origin)
            assert not (await socket.connect())[0]

    async def test_allowed_origins_setting_matches_scheme_host_and_port(self, alice, settings):
        configure(settings, ALLOWED_ORIGINS=["https://app.example.com"])
        for origin in (
            "http://app.example.com",
            "https://app.example.com:8443",
            "http://localhost",
        ):
            socket = socket_communicator(application, await aissue_ticket(alice), origin=origin)
            assert not (await socket.connect())[0], origin
        socket, _, _ = await open_socket(application, alice, origin="https://APP.example.com:443")
        await socket.disconnect()

    async def test_handshake_without_origin_is_left_to_the_ticket(self, alice):
        # Non-browser clients send no Origin; they still need a ticket.
        socket = socket_communicator(application, None)
        assert (await socket.connect())[0]
        await assert_closed_before_any_data(socket, 4001)


class TestFrames:
    async def test_ping_gets_pong(self, alice):
        socket, _, _ = await open_socket(application, alice)
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from() == {"type": "pong"}
        await socket.disconnect()

    async def test_bad_frames_get_an_error_and_the_socket_stays_open(self, alice):
        socket, _, _ = await open_socket(application, alice)
        for frame, code in [
            ('{"type": "subscribe"}', "unknown_type"),
            ("not json", "malformed"),
            ("[1, 2]", "malformed"),
            ('{"type": 7}', "malformed"),
            ('{"type": "resume", "after": "7"}', "invalid_resume"),
            ('{"type": "resume", "after": -1}', "invalid_resume"),
            ('{"type": "resume", "after": true}', "invalid_resume"),
            ('{"type": "resume"}', "invalid_resume"),
        ]:
            await socket.send_to(text_data=frame)
            error = await socket.receive_json_from()
            assert error["type"] == "error" and error["code"] == code and error["detail"], frame
            await socket.send_json_to({"type": "ping"})
            assert await socket.receive_json_from() == {"type": "pong"}
        await socket.disconnect()

    async def test_binary_frame_gets_an_error(self, alice):
        socket, _, _ = await open_socket(application, alice)
        await socket.send_to(bytes_data=b'{"type": "ping"}')
        assert (await socket.receive_json_from())["code"] == "binary_frame"
        await socket.disconnect()

    async def test_frame_of_exactly_4_kib_is_read(self, alice):
        socket, _, _ = await open_socket(application, alice)
        frame = '{"type": "ping", "pad": "' + "x" * 4096
        frame = frame[: 4096 - 2] + '"}'
        assert len(frame.encode()) == 4096
        await socket.send_to(text_data=frame)
        assert await socket.receive_json_from() == {"type": "pong"}
        await socket.disconnect()

    async def test_a_flood_of_frames_is_answered_rate_limited_and_the_socket_stays_open(
        self, alice, settings
    ):
        configure(settings, CLIENT_FRAME_BURST=3, CLIENT_FRAMES_PER_SECOND=0.1)
        socket, _, _ = await open_socket(application, alice)
        answers = []
        for _ in range(3):
            await socket.send_json_to({"type": "ping"})
            answers.append((await socket.receive_json_from())["type"])
        # Over the burst: a resume (a database read) is refused, not performed.
        await socket.send_json_to({"type": "resume", "after": 0})
        refused = await socket.receive_json_from()
        assert answers == ["pong"] * 3
        assert (refused["type"], refused["code"]) == ("error", "rate_limited")
        assert await socket.receive_nothing(0.2)
        # Tokens come back at the configured rate; the socket was never closed.
        configure(settings, CLIENT_FRAME_BURST=3, CLIENT_FRAMES_PER_SECOND=1000)
        await asyncio.sleep(0.05)
        await socket.send_json_to({"type": "resume", "after": 0})
        assert (await socket.receive_json_from())["type"] == "resumed"
        await socket.disconnect()

    async def test_frame_over_4_kib_closes_1009(self, alice):
        socket, _, _ = await open_socket(application, alice)
        # 4097 bytes in UTF-8, fewer characters: the limit counts bytes.
        await socket.send_to(text_data='{"type": "ping", "pad": "' + "é" * 2040 + '"}')
        await expect_close(socket, 1009)


class TestSocketCap:
    async def test_one_socket_over_the_cap_is_closed_4008(self, alice, bob):
        sockets = [(await open_socket(application, alice))[0] for _ in range(10)]
        extra = socket_communicator(application, await aissue_ticket(alice))
        assert (await extra.connect())[0]
        await assert_closed_before_any_data(extra, 4008)
        # Other users are not affected.
        other, _, _ = await open_socket(application, bob)
        await other.disconnect()
        # A closed socket frees its slot.
        await sockets.pop().disconnect()
        again, _, _ = await open_socket(application, alice)
        await disconnect_all([*sockets, again])

    async def test_forged_tickets_naming_a_user_hold_none_of_their_slots(self, alice, settings):
        # A ticket names its user so the socket can join that user's group
        # before the database answers; the slot is claimed only after it has.
        configure(settings, MAX_SOCKETS_PER_USER=2)
        named = tickets._encode_user(alice.pk)
        forged = [socket_communicator(application, f"{named}.{'x' * 43}") for _ in range(4)]
        for socket in forged:
            assert (await socket.connect())[0]
            await assert_closed_before_any_data(socket, 4001)
        first, _, _ = await open_socket(application, alice)
        second, _, _ = await open_socket(application, alice)
        await disconnect_all([first, second])

    async def test_cap_follows_the_setting(self, alice, settings):
        configure(settings, MAX_SOCKETS_PER_USER=1)
        first, _, _ = await open_socket(application, alice)
        second = socket_communicator(application, await aissue_ticket(alice))
        assert (await second.connect())[0]
        await assert_closed_before_any_data(second, 4008)
        await first.disconnect()


class TestLifetime:
    async def test_server_closes_the_socket_at_the_maximum_age(self, alice, settings):
        configure(settings, MAX_CONNECTION_AGE_SECONDS=1)
        socket, _, _ = await open_socket(application, alice)
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from() == {"type": "pong"}
        await expect_close(socket, 1001, timeout=3)
        # The client comes back with a new ticket.
        again, _, _ = await open_socket(application, alice)
        await again.disconnect()
