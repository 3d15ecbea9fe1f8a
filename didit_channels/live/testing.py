"""Helpers for testing code that uses the live socket, with channels' communicator.

::

    from didit_channels.live.testing import open_socket

    @pytest.mark.django_db(transaction=True)
    async def test_page_gets_pushes(alice):
        socket, hello, snapshot = await open_socket(application, alice)
        ...
        await socket.disconnect()

Socket tests need ``transaction=True``: the consumer reads the database from
other threads, which cannot see a test's uncommitted transaction.

Caveat: don't ``asyncio.gather`` communicator calls. Each one patches
``channels.db.close_old_connections`` while it waits, and overlapping patches
can leave the no-op in place for the rest of the run (connections then leak
and a PostgreSQL test database cannot be dropped). Use ``disconnect_all``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from ..routing import SOCKET_PATH
from . import tickets
from .consumers import SUBPROTOCOL, TICKET_SUBPROTOCOL_PREFIX


@database_sync_to_async
def aissue_ticket(user: Any) -> str:
    """A fresh ticket for ``user``, as ``POST /didit/api/tickets/`` would give."""
    return tickets.issue(user).ticket


def socket_communicator(
    application: Any,
    ticket: str | None = None,
    *,
    as_subprotocol: bool = False,
    origin: str | None = None,
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
) -> WebsocketCommunicator:
    """A communicator for the socket path, carrying ``ticket`` the way a browser would."""
    path, subprotocols = SOCKET_PATH, []
    if ticket is not None and as_subprotocol:
        subprotocols = [SUBPROTOCOL, TICKET_SUBPROTOCOL_PREFIX + ticket]
    elif ticket is not None:
        path = f"{SOCKET_PATH}?ticket={ticket}"
    headers = [(b"origin", origin.encode("latin1"))] if origin is not None else []
    communicator = WebsocketCommunicator(application, path, headers, subprotocols)
    if client is not None:
        communicator.scope["client"] = list(client)
    return communicator


async def open_socket(
    application: Any, user: Any, *, timeout: float = 3, **options: Any
) -> tuple[WebsocketCommunicator, dict[str, Any], dict[str, Any]]:
    """Connect ``user``; returns the communicator, the ``hello`` and the ``snapshot``.

    Fails (AssertionError) when the socket is not accepted or does not greet.
    """
    communicator = socket_communicator(application, await aissue_ticket(user), **options)
    connected, _ = await communicator.connect(timeout)
    assert connected, "the socket was refused before accept"
    hello = await communicator.receive_json_from(timeout)
    assert hello["type"] == "hello", hello
    snapshot = await communicator.receive_json_from(timeout)
    assert snapshot["type"] == "snapshot", snapshot
    return communicator, hello, snapshot


async def disconnect_all(
    communicators: Iterable[WebsocketCommunicator], timeout: float = 1
) -> None:
    """Disconnect several sockets, waiting for them together but patching nothing concurrently.

    (On channels_redis a consumer takes up to a second to stop receiving, so
    one-by-one ``disconnect()`` adds up.)
    """
    communicators = list(communicators)
    for communicator in communicators:
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await asyncio.gather(*(communicator.wait(timeout) for communicator in communicators))
