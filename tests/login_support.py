"""Signed-in browsers and their sockets, for tests of what ends a login (logout, password change).

A ``Browser`` is a Django test client with its own login session; it asks for
tickets with its session cookie through the real ``POST /didit/api/tickets/``.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.test import Client

from didit_channels.live.testing import socket_communicator
from project.asgi import application


class Browser:
    """One signed-in browser: ``Browser(user)`` (forced login) or
    ``Browser(username=..., password=...)`` (a real password check)."""

    def __init__(self, user=None, *, username: str | None = None, password: str | None = None):
        self.client = Client()
        if user is not None:
            self.client.force_login(user)
        else:
            assert self.client.login(username=username, password=password)

    @property
    def session_key(self) -> str:
        return self.client.session.session_key

    def ticket_status(self) -> int:
        return self.client.post("/didit/api/tickets/").status_code

    def ticket(self) -> str:
        response = self.client.post("/didit/api/tickets/")
        assert response.status_code == 201, response.content
        return response.json()["ticket"]


async def sync(function, *args, **kwargs):
    return await database_sync_to_async(function)(*args, **kwargs)


async def connect(ticket: str):
    socket = socket_communicator(application, ticket)
    connected, _ = await socket.connect(3)
    assert connected
    return socket


async def open_from(browser: Browser):
    """A socket opened with a ticket of ``browser``'s login, past hello and snapshot."""
    socket = await connect(await sync(browser.ticket))
    assert (await socket.receive_json_from(3))["type"] == "hello"
    assert (await socket.receive_json_from(3))["type"] == "snapshot"
    return socket


async def stays_open(socket) -> None:
    """Nothing arrives unasked, and the socket still answers."""
    assert await socket.receive_nothing(0.3)
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
