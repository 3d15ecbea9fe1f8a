"""A process-wide watch that gives each socket what the channel layer failed to push.

Pushes travel over the channel layer, which is best effort: Redis Pub/Sub
drops what is published while a subscriber reconnects (a Redis restart), a
process killed between a commit and its publish never sends the push, and
channels_redis drops messages over capacity. A socket recovers a lost push
when its next push arrives (``prev`` shows the gap), but the last push before
a quiet period would wait for the client's next reconnect: an open socket,
silent about a change that is in the history.

So each server process (each event loop) watches the history while it has
sockets: every ``CATCH_UP_SECONDS`` one query reads, for the events committed
since its last look, the newest id per user. A local socket that has not been
given such an event (an admin socket: any event) a moment later is sent a
``didit.catch_up`` message on its own channel and reads the history up to it,
in turn with its other messages and through the same cursor as a push: nothing
twice, nothing out of order.

Cost: one query per process per interval, whatever the number of sockets,
plus one history read per socket that did miss something. Caveat: while the
layer is down the catch-up messages cannot be delivered either; they are sent
on the first look after it is back.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from django.db.models import Max

from ..conf import didit_settings
from ..models import StatusEvent
from ..workers import in_worker

logger = logging.getLogger("didit_channels.live")

CATCH_UP = "didit.catch_up"
# Pushes still in flight when the history is read get this long to land first.
GRACE_SECONDS = 1.0


def newest_since(after: int) -> tuple[int, dict[str, int]]:
    """The newest event id after ``after``, and the newest per user (keyed by the pk as text)."""
    rows = list(
        StatusEvent.objects.filter(id__gt=after)
        .values_list("user_id")
        .annotate(newest=Max("id"))
        .order_by()
    )
    per_user = {str(user_id): newest for user_id, newest in rows if user_id is not None}
    overall = max((newest for _, newest in rows), default=0)
    return overall, per_user


class Watch:
    """The sockets of one event loop, and the task that looks at the history for them.

    A socket is added once greeted (its ``cursor`` is then the newest id it
    has been given) and discarded when it leaves; the task stops with the
    last one.
    """

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self.watermark: int | None = None
        self._task: asyncio.Task | None = None

    def add(self, socket: Any) -> None:
        if self.watermark is None:
            self.watermark = socket.cursor
        self.sockets.add(socket)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, socket: Any) -> None:
        self.sockets.discard(socket)
        if not self.sockets and self._task is not None:
            self._task.cancel()
            self._task, self.watermark = None, None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(didit_settings.CATCH_UP_SECONDS)
            try:
                await self.look()
            except Exception:  # noqa: BLE001 - the next look tries again
                logger.warning("Could not check the sockets against the history.", exc_info=True)

    async def look(self) -> None:
        """One look: tell every local socket that missed an event to catch up."""
        if self.watermark is None:
            return
        newest, per_user = await in_worker(newest_since)(self.watermark)
        if not newest:
            return
        await asyncio.sleep(GRACE_SECONDS)
        delivered = True
        for socket in list(self.sockets):
            upto = newest if socket.admin else per_user.get(str(socket.user_pk))
            if upto is None or upto <= socket.cursor or socket.closed:
                continue
            try:
                await socket.channel_layer.send(
                    socket.channel_name, {"type": CATCH_UP, "upto": upto}
                )
            except Exception:  # noqa: BLE001 - the layer is down: the next look retries
                delivered = False
        if delivered:
            self.watermark = max(self.watermark, newest)
        else:
            logger.warning("Could not ask sockets to catch up; retrying on the next look.")


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watch] = weakref.WeakKeyDictionary()


def watch() -> Watch | None:
    """This event loop's watch, or None when ``CATCH_UP_SECONDS`` is 0 (off)."""
    if not didit_settings.CATCH_UP_SECONDS:
        return None
    loop = asyncio.get_running_loop()
    if loop not in _watches:
        _watches[loop] = Watch()
    return _watches[loop]
