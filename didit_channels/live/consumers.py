"""The socket at ``/ws/didit/``: one ticket in, every visible status change out.

Lifecycle of a connection (CONTRACT.md, "WebSocket"):

1. Handshake, kept small because ASGI servers give up on slow ones (daphne
   after 5 s): the socket joins the group of the user its ticket names, then
   one worker-thread hop spends the ticket (reading the user's audiences),
   the cursor and the snapshot; an admin's socket joins the admin group and
   re-reads its access; the socket claims a slot under the per-user cap and
   is accepted. Every refusal after the origin check is an
   accept followed by a close (4001 bad ticket, 4003 no access, 4008 too many
   sockets), because a close before accept reaches a browser as a bare 403.
2. ``hello`` (with the cursor: the newest history id when the snapshot was
   read) and ``snapshot``.
3. Live ``status`` frames, gap-free: each layer message carries ``prev``, the
   newest id committed before it that this audience may see (the owner's
   previous event for the user group, the previous event of all for the admin
   group: ``groups.Prev``). A frame at or below the cursor was already sent
   and is dropped; when ``prev`` is above the cursor, something in between
   was lost (the layer is best effort), so the socket reads what it may see
   up to the frame from the database instead. Either way the cursor moves to
   the frame's id. An admin's socket, in both groups, takes the admin copy.
4. ``resume`` replays from the database, then ``resumed``.

Channels handles one message per consumer at a time, so layer messages that
arrive while the snapshot or a replay is being read wait their turn and are
then filtered by the cursor: nothing is skipped, nothing is sent twice by
the live path.

Caveat: a push lost by the layer is recovered on the socket's next push or
on the client's next ``resume`` (on reconnect), not on its own.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import random
from typing import Any, NoReturn
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch

from ..conf import didit_settings
from ..workers import in_worker
from . import catchup, stream, tickets
from .access import ADMIN, USER, Access, read_access
from .groups import admin_group, bounded, encode_frame, user_group
from .messages import error_frame, hello_frame
from .registry import SocketRegistry, registry_for, renew_delay
from .transport import send_close_frame, unsent_bytes_probe

logger = logging.getLogger("didit_channels.live")

SUBPROTOCOL = "didit.v1"
TICKET_SUBPROTOCOL_PREFIX = "ticket."

CLOSE_GOING_AWAY = 1001  # connection lifetime reached: reconnect with a new ticket
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_NOT_READING = 1013  # try again later: the client fell behind MAX_SOCKET_BACKLOG_BYTES
CLOSE_BAD_TICKET = 4001
CLOSE_NO_ACCESS = 4003
CLOSE_TOO_MANY_SOCKETS = 4008

# How long a history replay waits for a client to read what it was sent.
DRAIN_SECONDS = 10.0
DRAIN_POLL_SECONDS = 0.05


def ticket_from_scope(scope: dict[str, Any]) -> tuple[str | None, str | None]:
    """(ticket, subprotocol to select): ``ticket.<t>`` subprotocol first, then ``?ticket=``."""
    offered = [str(p) for p in scope.get("subprotocols") or []]
    selected = SUBPROTOCOL if SUBPROTOCOL in offered else None
    for protocol in offered:
        if protocol.startswith(TICKET_SUBPROTOCOL_PREFIX):
            return protocol[len(TICKET_SUBPROTOCOL_PREFIX) :], selected
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    values = query.get("ticket")
    return (values[0] if values else None), selected


def client_address(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class StatusConsumer(AsyncWebsocketConsumer):
    """Pushes status changes to the sockets allowed to see them.

    State lives on the instance (one instance per connection): the user, whether
    the socket is in the admin audience (fixed at the handshake; a user granted
    the permission later reconnects to get it), and the cursor.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user_pk: Any = None
        self.admin = False
        self.cursor = 0
        self.login_hash = ""  # the login session the ticket came from (live/logout.py)
        self.closed = False
        self._joined: list[str] = []
        self._claimed = False
        self._lifetime_task: asyncio.Task | None = None
        self._unsent: Any = None  # live/transport.py: None when the server cannot tell
        self._watch: catchup.Watch | None = None
        self._frame_tokens: float | None = None  # _frame_allowed
        self._frame_checked_at = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """channels' own, except when the layer cannot give the socket a channel.

        ``RedisPubSubChannelLayer.new_channel`` subscribes in Redis: with Redis
        unreachable it raises before the consumer has seen the handshake, and
        the server answers HTTP 500, which a browser reports as a bare failure.
        Here the handshake is accepted and closed with 1011 ("could not reach
        its database or Redis": retry with backoff), like every other refusal.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources = [receive]
        if self.channel_layer is not None:
            try:
                self.channel_name = await bounded(self.channel_layer.new_channel())
            except Exception as error:  # noqa: BLE001 - answered with 1011 below
                # The type only: a connection error's text can hold the layer's URL.
                logger.error(
                    "Refused a socket: the channel layer is unreachable (%s).", type(error).__name__
                )
                await self._refuse_before_dispatch(receive)
                return
            sources.append(functools.partial(self.channel_layer.receive, self.channel_name))
        try:
            await await_many_dispatch(sources, self.dispatch)
        except StopConsumer:
            pass

    async def _refuse_before_dispatch(self, receive: Any) -> None:
        """Accept the handshake and close it with 1011 (``__call__``)."""
        message = await receive()
        if message.get("type") != "websocket.connect":
            return  # the client left first
        _ticket, subprotocol = ticket_from_scope(self.scope)
        self.closed = True
        await self.accept(subprotocol)
        await self._send_close(CLOSE_SERVER_ERROR)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first awaits aclose_old_connections(), a hop
        # to the one thread-sensitive worker thread, before *every* handler,
        # layer messages included: one change fanned out to 1,000 sockets
        # queued 1,000 hops (bench: fan-out 1.20x -> 0.72x the bare baseline
        # without it). Every database call here already goes through in_worker,
        # which closes old connections around itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- handshake ------------------------------------------------------

    async def connect(self) -> None:
        """One database round trip for a user's socket, two for an admin's.

        The ticket names its user, so the socket joins that user's group
        first and only then spends the ticket and reads access, cursor and
        snapshot (``stream.open_with_ticket``): a revocation committed after
        that read reaches the socket through the group. An admin's socket
        then joins the admin group and reads its access once more, for the
        same reason (a change it missed in between comes with the next push,
        whose ``prev`` shows the gap, or from the catch-up sweep).
        """
        ticket, subprotocol = ticket_from_scope(self.scope)
        if self.channel_layer is None:
            logger.error("No channel layer is configured; sockets cannot receive pushes.")
            await self._refuse(CLOSE_SERVER_ERROR, subprotocol)
            return
        named = tickets.ticket_user(ticket)
        if named is None:
            logger.info("Refused a socket: ticket missing or malformed.")
            await self._refuse(CLOSE_BAD_TICKET, subprotocol)
            return
        try:
            await self._join(user_group(named))
            opening = await in_worker(stream.open_with_ticket)(ticket, client_address(self.scope))
        except Exception:
            logger.exception("Could not check a socket ticket.")
            await self._refuse(CLOSE_SERVER_ERROR, subprotocol)
            return
        if opening is None or str(opening.access.user_pk) != str(named):
            logger.info("Refused a socket: ticket unknown, expired or used.")
            await self._refuse(CLOSE_BAD_TICKET, subprotocol)
            return
        access = opening.access
        if not access.is_active:
            logger.info("Refused a socket of inactive user %s.", access.user_pk)
            await self._refuse(CLOSE_NO_ACCESS, subprotocol)
            return
        self.user_pk, self.admin = access.user_pk, access.view_all
        self.login_hash = access.login_hash
        if self.admin:
            try:
                await self._join(admin_group())
                access = await in_worker(read_access)(self.user_pk)
            except Exception:
                logger.exception("Could not check access of user %s.", self.user_pk)
                await self._refuse(CLOSE_SERVER_ERROR, subprotocol)
                return
            if not self._still_allowed(access):
                logger.info("Refused a socket of user %s: access revoked.", self.user_pk)
                await self._refuse(CLOSE_NO_ACCESS, subprotocol)
                return

        try:
            self._claimed = await bounded(
                self._registry().claim(
                    self.user_pk, self.channel_name, didit_settings.MAX_SOCKETS_PER_USER
                )
            )
        except Exception:
            logger.exception("Could not register a socket of user %s.", self.user_pk)
            await self._refuse(CLOSE_SERVER_ERROR, subprotocol)
            return
        if not self._claimed:
            logger.info("Refused a socket of user %s: over MAX_SOCKETS_PER_USER.", self.user_pk)
            await self._refuse(CLOSE_TOO_MANY_SOCKETS, subprotocol)
            return

        await self.accept(subprotocol)
        self._unsent = unsent_bytes_probe(self.base_send)
        self._lifetime_task = asyncio.create_task(self._lifetime())
        self.cursor = opening.cursor
        audiences = [USER, ADMIN] if self.admin else [USER]
        await self._send(hello_frame(self.user_pk, audiences, self.cursor))
        await self._send({"type": "snapshot", "sessions": opening.sessions})
        if not self.closed:
            self._watch = catchup.watch()
            if self._watch is not None:
                self._watch.add(self)

    async def _join(self, group: str) -> None:
        await bounded(self.channel_layer.group_add(group, self.channel_name))
        self._joined.append(group)

    def _registry(self) -> SocketRegistry:
        return registry_for(self.channel_layer, self.channel_layer_alias)

    async def _refuse(self, code: int, subprotocol: str | None) -> NoReturn:
        """Accept, then close with ``code`` (module doc); leave groups and slot first.

        Then stop: a refused socket has nothing more to hear, and with Redis
        unreachable its channel's receive would fail once more, as an
        application error in the server's log.
        """
        self.closed = True
        await self._leave()
        await self.accept(subprotocol)
        await self._send_close(code)
        raise StopConsumer()

    def _still_allowed(self, access: Access | None) -> bool:
        if access is None or not access.is_active:
            return False
        return access.view_all or not self.admin

    # --- client frames --------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        text, data = message.get("text"), message.get("bytes")
        size = len(text.encode("utf-8")) if text is not None else len(data or b"")
        if size > didit_settings.MAX_CLIENT_FRAME_BYTES:
            logger.info("Closing a socket of user %s: a %d-byte frame.", self.user_pk, size)
            await self._close(CLOSE_TOO_BIG)
            return
        if not self._frame_allowed():
            await self._error("rate_limited", "Too many frames; slow down.")
            return
        if text is None:
            await self._error("binary_frame", "Frames are JSON text, not binary.")
            return
        try:
            content = json.loads(text)
        except ValueError:
            content = None
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self._error("malformed", 'Frames are JSON objects with a string "type".')
            return
        kind = content["type"]
        if kind == "ping":
            await self._send({"type": "pong"})
        elif kind == "resume":
            await self._resume(content.get("after"))
        else:
            await self._error("unknown_type", 'Known types are "ping" and "resume".')

    def _frame_allowed(self) -> bool:
        """A token bucket per socket: ``CLIENT_FRAME_BURST`` at once, then
        ``CLIENT_FRAMES_PER_SECOND``. A client flooding resumes (each a database
        read) or pings gets error frames instead of the server's work."""
        rate = didit_settings.CLIENT_FRAMES_PER_SECOND
        burst = didit_settings.CLIENT_FRAME_BURST
        if rate is None or burst is None:
            return True
        now = asyncio.get_running_loop().time()
        if self._frame_tokens is None:
            self._frame_tokens = float(burst)
        else:
            elapsed = now - self._frame_checked_at
            self._frame_tokens = min(float(burst), self._frame_tokens + elapsed * float(rate))
        self._frame_checked_at = now
        if self._frame_tokens < 1:
            return False
        self._frame_tokens -= 1
        return True

    async def _resume(self, after: Any) -> None:
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            await self._error("invalid_resume", '"after" must be a non-negative integer id.')
            return
        try:
            upto = await in_worker(stream.latest_event_id)()
            await self._send_history(after, upto)
        except Exception:
            logger.exception("Could not replay history for user %s.", self.user_pk)
            await self._close(CLOSE_SERVER_ERROR)
            return
        self.cursor = max(self.cursor, upto)
        await self._send({"type": "resumed", "cursor": self.cursor})

    # --- layer messages -------------------------------------------------

    async def didit_status(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        frame = message.get("frame") or {}
        frame_id = frame.get("id")
        if not isinstance(frame_id, int) or frame_id <= self.cursor:
            return
        if not self.admin and str(frame.get("user")) != str(self.user_pk):
            return  # not this user's: never forwarded, whatever group it came through
        if self.admin and message.get("audience") == USER:
            return  # the admin group's copy comes too, with the gap marker for everything
        prev = message.get("prev")
        try:
            if prev is not None and prev > self.cursor:
                await self._send_history(self.cursor, frame_id)
            else:
                text = message.get("text")
                await self._send_text(text if isinstance(text, str) else encode_frame(frame))
        except Exception:
            logger.exception("Could not catch up user %s from history.", self.user_pk)
            await self._close(CLOSE_SERVER_ERROR)
            return
        self.cursor = max(self.cursor, frame_id)

    async def didit_catch_up(self, message: dict[str, Any]) -> None:
        """Events up to ``upto`` that the history holds and no push brought (live/catchup.py)."""
        if self.closed:
            return
        upto = message.get("upto")
        if not isinstance(upto, int) or upto <= self.cursor:
            return
        try:
            await self._send_history(self.cursor, upto)
        except Exception:
            logger.exception("Could not catch up user %s from history.", self.user_pk)
            await self._close(CLOSE_SERVER_ERROR)
            return
        self.cursor = max(self.cursor, upto)

    async def didit_revoke_check(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            access = await in_worker(read_access)(self.user_pk)
        except Exception:
            # Cannot confirm access: fail closed, the client reconnects later.
            logger.exception("Could not re-check access of user %s.", self.user_pk)
            await self._close(CLOSE_SERVER_ERROR)
            return
        if not self._still_allowed(access):
            logger.info("Closing a socket of user %s: access revoked.", self.user_pk)
            await self._close(CLOSE_NO_ACCESS)

    async def didit_logged_out(self, message: dict[str, Any]) -> None:
        """A login session of this user ended: close if it is the one the ticket came from."""
        if self.closed or not self.login_hash:
            return
        login = message.get("login")
        if not isinstance(login, str) or not hmac.compare_digest(login, self.login_hash):
            return
        logger.info("Closing a socket of user %s: signed out.", self.user_pk)
        await self._close(CLOSE_NO_ACCESS, reason="signed out")

    async def didit_credentials_changed(self, message: dict[str, Any]) -> None:
        """The user's password changed: close; the client comes back with a new ticket,
        which a login the change ended cannot get (``live/credentials.py``)."""
        if self.closed:
            return
        logger.info("Closing a socket of user %s: credentials changed.", self.user_pk)
        await self._close(CLOSE_GOING_AWAY, reason="credentials changed")

    # --- sending and closing ---------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        await self._send_text(encode_frame(frame))

    async def _send_text(self, text: str) -> None:
        if self.closed:
            return
        await self.send(text_data=text)
        # The server queues whatever the client does not read; past the bound
        # the socket goes (the client resumes on reconnect), not the memory.
        if self._unsent is not None:
            backlog = self._unsent()
            if backlog > didit_settings.MAX_SOCKET_BACKLOG_BYTES:
                logger.warning(
                    "Closing a socket of user %s: the client is not reading (%d bytes waiting).",
                    self.user_pk,
                    backlog,
                )
                await self._close(CLOSE_NOT_READING)

    async def _drain(self) -> None:
        """Let a replay go at the client's pace: wait while the backlog is over half the bound.

        A client that does not bring it down within ``DRAIN_SECONDS`` is not
        reading, and its socket is closed.
        """
        if self._unsent is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while not self.closed and self._unsent() > didit_settings.MAX_SOCKET_BACKLOG_BYTES // 2:
            if loop.time() >= deadline:
                logger.warning(
                    "Closing a socket of user %s: the client is not reading.", self.user_pk
                )
                await self._close(CLOSE_NOT_READING)
                return
            await asyncio.sleep(DRAIN_POLL_SECONDS)

    async def _error(self, code: str, detail: str) -> None:
        # The frame itself is not logged: it is the client's, and may hold anything.
        logger.info("Answered a frame of user %s with error %s.", self.user_pk, code)
        await self._send(error_frame(code, detail))

    async def _send_history(self, after: int, upto: int) -> None:
        while after < upto and not self.closed:
            await self._drain()
            batch = await in_worker(stream.history_batch)(self.user_pk, self.admin, after, upto)
            for frame in batch:
                await self._send(frame)
            if len(batch) < stream.BATCH_SIZE:
                return
            after = batch[-1]["id"]

    async def _lifetime(self) -> None:
        """Renew the socket's slot (at random intervals, ``renew_delay``); close it
        when ``MAX_CONNECTION_AGE_SECONDS`` is up.

        The age is shortened by up to 10% at random so sockets opened together
        (after a deploy) do not all reconnect at the same instant.
        """
        loop = asyncio.get_running_loop()
        max_age = didit_settings.MAX_CONNECTION_AGE_SECONDS
        deadline = loop.time() + max_age * random.uniform(0.9, 1.0) if max_age else None
        registry = self._registry()
        while True:
            wait = renew_delay()
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
            if deadline is not None and loop.time() >= deadline:
                break
            try:
                await registry.renew(self.user_pk, self.channel_name)
            except Exception:  # noqa: BLE001 - retried on the next round
                logger.warning("Could not renew a socket slot of user %s.", self.user_pk)
        await self._close(CLOSE_GOING_AWAY, reason="maximum connection age reached")

    async def _close(self, code: int, reason: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._send_close(code, reason)
        finally:
            # Even if the server failed to close it: the slot and groups must go.
            await self._leave()

    async def _send_close(self, code: int, reason: str | None = None) -> None:
        # daphne refuses ASGI close codes other than 1000 and 3000-4999 (it
        # raises instead of closing), and drops an ASGI close's reason: 1001,
        # 1009, 1011, 1013 and any close with a reason go straight to its
        # WebSocket protocol (live/transport.py).
        if reason or (code != 1000 and not 3000 <= code <= 4999):
            if send_close_frame(self.base_send, code, reason):
                return
        await self.close(code, reason=reason)

    async def _leave(self) -> None:
        """Leave groups, free the slot, stop the timer. Idempotent; never raises."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.discard(self)
        task, self._lifetime_task = self._lifetime_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        groups, self._joined = self._joined, []
        for group in groups:
            try:
                await bounded(self.channel_layer.group_discard(group, self.channel_name))
            except Exception:  # noqa: BLE001 - group membership expires in the layer
                logger.warning("Could not leave group %s.", group)
        if self._claimed:
            self._claimed = False
            try:
                await bounded(self._registry().release(self.user_pk, self.channel_name))
            except Exception:  # noqa: BLE001 - the slot lapses after CLAIM_SECONDS
                logger.warning("Could not free a socket slot of user %s.", self.user_pk)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Not channels' own: it also hops to the thread-sensitive worker to
        # close connections this consumer never opened on the loop (every
        # database call runs through in_worker), once per disconnect.
        self.closed = True
        await self._leave()
        await self.disconnect(message.get("code"))
        raise StopConsumer()
