"""Channel-layer group names and publishing of status events.

Every authenticated socket joins its user's group; sockets in the admin
audience also join the admin group. Publishing happens after the database
commit and never raises: the history row is the source of truth, and a
client that missed a push (layer down, group over capacity) gets it back by
gap detection on the next push or by ``resume``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from ..conf import didit_settings
from .access import ADMIN, USER

logger = logging.getLogger("didit_channels.live")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")

# Message types on the layer (dispatched to consumer methods didit_status, ...).
STATUS = "didit.status"
REVOKE_CHECK = "didit.revoke_check"
LOGGED_OUT = "didit.logged_out"
CREDENTIALS_CHANGED = "didit.credentials_changed"


T = TypeVar("T")


async def bounded(call: Awaitable[T]) -> T:
    """``call`` (a channel-layer operation), given at most ``LAYER_TIMEOUT_SECONDS``.

    A Redis that is down fails fast; one that stalls (frozen, or the network
    to it dropping packets) fails nothing and answers nothing: without a bound,
    a webhook waited for its push as long as the stall lasted. With one, the
    caller gets ``TimeoutError`` and treats it as any other layer failure (the
    history row is kept; clients catch up).
    """
    timeout = didit_settings.LAYER_TIMEOUT_SECONDS
    if not timeout:
        return await call
    async with asyncio.timeout(timeout):
        return await call


def user_group(user_pk: Any) -> str:
    return f"{didit_settings.GROUP_PREFIX}.user.{_UNSAFE.sub('_', str(user_pk))}"


def admin_group() -> str:
    return f"{didit_settings.GROUP_PREFIX}.admin"


class Prev(NamedTuple):
    """What was committed before a history row (ids commit in order, ``state.record_event``).

    ``overall``: the newest id of all; ``owner``: the newest id of the same
    user's events. An admin socket sees every event, so ``overall`` is its
    gap marker; a user's socket sees only that user's events, so ``owner``
    is: other users' traffic does not send it to the database for events it
    may not see anyway.
    """

    overall: int | None
    owner: int | None


def status_message(
    frame: dict[str, Any],
    prev_id: int | None,
    audience: str | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """Layer message for a status frame, for one audience's group.

    ``prev`` is the id of the newest event this audience could see before
    this one (``Prev``); a socket whose cursor is below it may have missed
    events and reads them from the database. ``audience`` says which group the
    copy was sent to (``"user"`` or ``"admin"``): a socket in both (an admin's)
    takes the admin copy, whose ``prev`` covers everything it may see.
    ``text`` is the frame already encoded: a change fanned out to a thousand
    sockets is encoded once (bench/bench_fanout.py), and ``frame`` is what a
    socket filters on.
    """
    return {
        "type": STATUS,
        "frame": frame,
        "prev": prev_id,
        "audience": audience,
        "text": text if text is not None else encode_frame(frame),
    }


def encode_frame(frame: dict[str, Any]) -> str:
    """A frame as the socket sends it. Encoded once by the publisher, not once per socket."""
    return json.dumps(frame, default=str)


async def apublish_status(frame: dict[str, Any], prev: Prev | None) -> None:
    """Send ``frame`` to its owner's group and the admin group (``prev``: None when
    there is no gap to tell of, as for a repeat)."""
    layer = get_channel_layer()
    if layer is None:
        return
    text = encode_frame(frame)  # once for both copies
    sends = []
    if frame.get("user") is not None:
        owner_prev = prev.owner if prev is not None else None
        sends.append((user_group(frame["user"]), status_message(frame, owner_prev, USER, text)))
    overall_prev = prev.overall if prev is not None else None
    sends.append((admin_group(), status_message(frame, overall_prev, ADMIN, text)))
    # Both copies at once: under a stalled layer the webhook waits one
    # LAYER_TIMEOUT_SECONDS, not one per group.
    outcomes = await asyncio.gather(
        *(bounded(layer.group_send(group, message)) for group, message in sends),
        return_exceptions=True,
    )
    for (group, _message), outcome in zip(sends, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            # The layer is best effort; history is the truth.
            logger.warning(
                "Could not publish status event %s to %s (%s); clients will catch up from history.",
                frame.get("id"),
                group,
                type(outcome).__name__,
                exc_info=outcome if not isinstance(outcome, TimeoutError) else None,
            )


_deferred: ContextVar[list[tuple[dict[str, Any], Prev | None]] | None] = ContextVar(
    "didit_deferred_publications", default=None
)


def publish_status(frame: dict[str, Any], prev: Prev | None) -> None:
    pending = _deferred.get()
    if pending is not None:
        pending.append((frame, prev))
        return
    async_to_sync(apublish_status)(frame, prev)


@contextmanager
def deferred_publications() -> Iterator[list[tuple[dict[str, Any], Prev | None]]]:
    """Collect what ``publish_status`` would send, for the caller to ``apublish_status``.

    For sync code called from an event loop (the webhook fast path): the
    caller publishes from the loop itself afterwards, instead of each commit
    hook blocking its worker thread on a hop back to the loop. Only what was
    committed is collected (``publish_status`` runs from ``on_commit``).
    """
    pending: list[tuple[dict[str, Any], Prev | None]] = []
    token = _deferred.set(pending)
    try:
        yield pending
    finally:
        _deferred.reset(token)


async def asend_revoke_check(user_pk: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await bounded(layer.group_send(user_group(user_pk), {"type": REVOKE_CHECK}))
    except Exception:  # noqa: BLE001
        logger.error("Could not ask sockets of user %s to re-check access.", user_pk, exc_info=True)


def send_revoke_check(user_pk: Any) -> None:
    async_to_sync(asend_revoke_check)(user_pk)


async def asend_logged_out(user_pk: Any, login_hash: str) -> None:
    """Tell ``user_pk``'s sockets, on every process, that one login session ended;
    those it opened close (``live/logout.py``). Carries the session's hash, never its key."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await bounded(
            layer.group_send(user_group(user_pk), {"type": LOGGED_OUT, "login": login_hash})
        )
    except Exception:  # noqa: BLE001
        logger.error("Could not close the sockets of a logout of user %s.", user_pk, exc_info=True)


def send_logged_out(user_pk: Any, login_hash: str) -> None:
    async_to_sync(asend_logged_out)(user_pk, login_hash)


async def asend_credentials_changed(user_pk: Any) -> None:
    """Tell ``user_pk``'s sockets, on every process, that the password changed: each
    closes with 1001 and its client reconnects with a ticket its current
    credentials must earn (``live/credentials.py``)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await bounded(layer.group_send(user_group(user_pk), {"type": CREDENTIALS_CHANGED}))
    except Exception:  # noqa: BLE001
        logger.error(
            "Could not close the sockets of user %s after a password change.",
            user_pk,
            exc_info=True,
        )


def send_credentials_changed(user_pk: Any) -> None:
    async_to_sync(asend_credentials_changed)(user_pk)
