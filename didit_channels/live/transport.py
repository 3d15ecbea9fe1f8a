"""What the socket needs from the ASGI server that ASGI does not give it.

Two things, both about daphne (the server the demo site runs):

**The backlog of a client that stops reading.** ASGI has no flow control on
WebSockets: under daphne, ``await send(...)`` hands the frame to Twisted,
which writes what the kernel takes and keeps the rest in the connection's
user-space buffer, without limit. A client that stops reading (a frozen tab,
a stalled mobile link, or someone doing it on purpose) would make that buffer
grow with every push until the process runs out of memory; daphne's
keep-alive pings notice only after ``--ping-interval`` + ``--ping-timeout``
(50 s by default), however much is queued by then. ``unsent_bytes_probe``
reads that buffer's size, so the consumer can close a socket whose backlog
passes ``MAX_SOCKET_BACKLOG_BYTES`` and let a history replay wait for the
client to catch up. The kernel's own socket buffers come first and are not
counted: the backlog grows only once they are full.

**Close codes.** daphne passes the code of an ASGI ``websocket.close`` to
autobahn's application API, which refuses everything but 1000 and
3000-4999 (django/daphne#374): closing with 1001, 1009, 1011 or 1013 raises
instead of closing. The socket would stay open (the lifetime limit) or die
later with daphne's own 1011, skipping the consumer's clean-up (the
contract's 1009). ``send_close_frame`` sends such a code through the
WebSocket protocol's close frame directly, as daphne itself does for 1011.

Caveats: both read daphne's send callable (a ``functools.partial`` carrying
its protocol) and, for the backlog, Twisted's transport buffer attributes;
neither is public API. When they are not found (another ASGI server, the
test communicator, a release that changed them) the probe is None and
``send_close_frame`` returns False: the consumer then uses plain ASGI, where
servers whose ``send`` waits for a client that is not reading (uvicorn,
hypercorn) bound the buffer themselves, but hold the consumer up with it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# A TLS transport wraps the TCP one; a few hops is all there ever is.
_MAX_WRAPPING = 4
# RFC 6455 5.5.1: the close frame's payload is at most 125 bytes, 2 of them the code.
_MAX_REASON_BYTES = 123


def _daphne_protocol(send: Any) -> Any | None:
    """daphne's WebSocket protocol behind an ASGI ``send``, or None."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[0]
    if not type(protocol).__module__.startswith("daphne.") or not hasattr(protocol, "transport"):
        return None
    return protocol


def _buffered(transport: Any) -> int:
    """Bytes a Twisted ``FileDescriptor`` transport holds; 0 when it is not one."""
    data = getattr(transport, "dataBuffer", None)
    if not isinstance(data, bytes | bytearray | memoryview):
        return 0
    return (
        len(data)
        - int(getattr(transport, "offset", 0))
        + int(getattr(transport, "_tempDataLen", 0))
    )


def unsent_bytes_probe(send: Any) -> Callable[[], int] | None:
    """For an ASGI ``send`` callable: a function giving the bytes accepted but not yet
    written to the network, or None when the server does not let us know."""
    protocol = _daphne_protocol(send)
    if protocol is None:
        return None

    def unsent() -> int:
        total, transport = 0, getattr(protocol, "transport", None)
        for _ in range(_MAX_WRAPPING):
            if transport is None:
                break
            total += _buffered(transport)
            transport = getattr(transport, "transport", None)
        return total

    return unsent


def send_close_frame(send: Any, code: int, reason: str | None = None) -> bool:
    """Close an accepted socket with any RFC 6455 ``code`` under daphne.

    Returns False, having done nothing, when ``send`` is not daphne's or the
    protocol refuses (not yet accepted): use the ASGI ``websocket.close``.
    """
    protocol = _daphne_protocol(send)
    close = getattr(protocol, "sendCloseFrame", None)
    if close is None:
        return False
    payload = None
    if reason:
        # Cut at a character boundary: the reason must stay valid UTF-8.
        payload = reason.encode("utf-8")[:_MAX_REASON_BYTES].decode("utf-8", "ignore").encode()
    try:
        close(code=code, reasonUtf8=payload, isReply=False)
    except Exception:  # noqa: BLE001 - e.g. still connecting: the ASGI path decides
        return False
    return True
