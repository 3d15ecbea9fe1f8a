"""WebSocket load generation for the benchmarks: bursts of connects, push latency, idle sockets.

Everything here runs in one asyncio loop of the benchmark process and talks
only to 127.0.0.1. Every loop is bounded in count and in time.

* ``connect_burst`` opens N sockets at once (a start gate releases them
  together) and counts each outcome: ready (handshake done and the first
  frame read), or the error class (``http 500``, ``close 4001``, ``timeout``,
  ``refused`` ...). The sockets it opened stay open for the caller.
* ``Inbox`` reads one socket in the background and resolves futures for
  frames a predicate picks, stamped with ``perf_counter`` when read: the
  receive side of every push-latency measurement.
* ``HttpClient`` is a tiny keep-alive HTTP/1.1 client that also returns the
  body (tickets come back as JSON); ``closed_loop`` runs K senders that each
  wait for their previous round to finish before starting the next.

The client is ``websockets`` with compression off and no keepalive pings:
the server under test decides what the sockets cost, not the client's
extensions. Client overheads (parsing 1,000 frames in one loop) are inside
every figure, for the app and the baseline alike; compare ratios.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import resource
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

# --- process limits -------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit toward ``wanted`` (up to the hard limit).

    Returns the soft limit in force afterwards. Child processes (the daphne
    servers) inherit it, so call this before starting them.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def calm_gc() -> None:
    """Keep this load generator's own garbage collections out of the figures.

    With 2,000 sockets open, a full collection in this process took ~150 ms
    (measured with gc.callbacks), and a round timed across it looked that
    much slower on whichever server it was timing. Call once the sockets are
    open: the same tuning as the servers (didit_channels/tuning.py), and the
    freeze then covers the sockets' own objects too.
    """
    from didit_channels.tuning import tune_gc

    tune_gc()


# --- sockets -----------------------------------------------------------------------


def classify(error: BaseException) -> str:
    """A short, stable label for why a socket did not become ready."""
    if isinstance(error, InvalidStatus):
        return f"http {error.response.status_code}"
    if isinstance(error, ConnectionClosed):
        code = error.rcvd.code if error.rcvd is not None else "none"
        return f"close {code}"
    if isinstance(error, InvalidHandshake):
        return f"handshake {type(error).__name__}"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError):
        return "reset"
    if isinstance(error, OSError):
        return f"os {error.errno}"
    return type(error).__name__


async def open_socket(
    url: str,
    *,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    timeout: float = 15.0,
    wait_first_frame: bool = True,
) -> tuple[ClientConnection, dict[str, Any] | None]:
    """Connect and, by default, read the first frame (the server's "hello").

    Raises on any failure; ``classify`` names it. A server that accepts and
    then closes (4001 for a bad ticket) raises ``ConnectionClosed`` here.
    """
    ws = await connect(
        url,
        origin=origin,
        subprotocols=subprotocols,
        open_timeout=timeout,
        close_timeout=2,
        ping_interval=None,
        compression=None,
        max_queue=64,
    )
    if not wait_first_frame:
        return ws, None
    try:
        first = await asyncio.wait_for(ws.recv(), timeout)
    except BaseException:
        await _abort(ws)
        raise
    return ws, json.loads(first)


async def _abort(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 2)


# One socket to open: the URL, and the subprotocols to offer (None: none).
Target = tuple[str, Sequence[str] | None]


@dataclass
class Burst:
    """Outcome of ``connect_burst``.

    ``seconds`` runs from the start gate to the last outcome; ``ready_times``
    holds, per ready socket, the seconds from its start to its first frame.
    """

    size: int
    seconds: float = 0.0
    sockets: list[ClientConnection] = field(default_factory=list)
    first_frames: list[dict[str, Any] | None] = field(default_factory=list)
    ready_times: list[float] = field(default_factory=list)
    errors: collections.Counter = field(default_factory=collections.Counter)

    @property
    def ready(self) -> int:
        return len(self.sockets)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        """Sockets made ready per second over the whole burst."""
        return self.ready / self.seconds if self.seconds > 0 else 0.0

    def error_text(self) -> str:
        return ", ".join(f"{label}: {n}" for label, n in self.errors.most_common()) or "none"


async def connect_burst(
    size: int,
    target: Callable[[int], Awaitable[Target]],
    *,
    concurrency: int | None = None,
    origin: str | None = None,
    timeout: float = 15.0,
    time_limit: float = 120.0,
    wait_first_frame: bool = True,
) -> Burst:
    """Open ``size`` sockets, all released at once (or ``concurrency`` at a time).

    ``target(i)`` is awaited inside the timed part, so a ticket request made
    there counts in the handshake (the benchmark's "ticket plus connect").
    Sockets that do not finish within ``time_limit`` count as ``timeout``.
    """
    burst = Burst(size=size)
    gate = asyncio.Event()
    limiter = asyncio.Semaphore(concurrency or size)

    async def one(index: int) -> None:
        await gate.wait()
        async with limiter:
            started = time.perf_counter()
            try:
                url, subprotocols = await target(index)
                ws, first = await open_socket(
                    url,
                    origin=origin,
                    subprotocols=subprotocols,
                    timeout=timeout,
                    wait_first_frame=wait_first_frame,
                )
            except Exception as error:  # noqa: BLE001 - every failure is a counted outcome
                burst.errors[classify(error)] += 1
                return
            burst.ready_times.append(time.perf_counter() - started)
            burst.sockets.append(ws)
            burst.first_frames.append(first)

    tasks = [asyncio.create_task(one(i)) for i in range(size)]
    await asyncio.sleep(0)  # let every task reach the gate
    started = time.perf_counter()
    gate.set()
    done, pending = await asyncio.wait(tasks, timeout=time_limit)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        burst.errors["timeout"] += len(pending)
    burst.seconds = time.perf_counter() - started
    return burst


async def close_all(sockets: Iterable[ClientConnection], *, concurrency: int = 200) -> None:
    """Close sockets politely, a bounded number at a time."""
    limiter = asyncio.Semaphore(concurrency)

    async def one(ws: ClientConnection) -> None:
        async with limiter:
            await _abort(ws)

    await asyncio.gather(*(one(ws) for ws in list(sockets)))


class Inbox:
    """Reads one socket in the background; ``expect(pred)`` gives a future of the read time.

    Register the expectation *before* triggering the push. Frames nobody
    expects are dropped (the socket's own queue never fills).
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.closed_code: int | None = None
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future]] = []
        self._task = asyncio.create_task(self._run())

    def expect(self, predicate: Callable[[dict[str, Any]], bool]) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        return future

    async def _run(self) -> None:
        try:
            async for message in self.ws:
                read_at = time.perf_counter()
                if not self._waiters:
                    continue
                frame = json.loads(message)
                keep = []
                for predicate, future in self._waiters:
                    if future.done():
                        continue
                    if predicate(frame):
                        future.set_result(read_at)
                    else:
                        keep.append((predicate, future))
                self._waiters = keep
        except ConnectionClosed:
            pass
        finally:
            self.closed_code = self.ws.close_code
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(ConnectionError(f"socket closed ({self.closed_code})"))
                    future.exception()  # a waiter may have given up: don't log it as lost
            self._waiters = []

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# --- HTTP --------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpClient:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port, reopened when the server closes it.

    Not for concurrent use: give each sender its own client.
    """

    def __init__(self, port: int, *, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        if body or method in {"POST", "PUT", "PATCH"}:
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            response = await asyncio.wait_for(self._read(), self.timeout)
        except BaseException:
            self.close()
            raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    async def _read(self) -> Response:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked()
        else:
            length = int(headers.get("content-length", "0"))
            body = await self._reader.readexactly(length) if length else b""
        return Response(int(status_line.split(" ", 2)[1]), headers, body)

    async def _read_chunked(self) -> bytes:
        # daphne streams error pages (its own 500) in chunks.
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


# --- closed-loop senders -------------------------------------------------------------


@dataclass
class LoopRun:
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0


async def closed_loop(
    senders: int,
    rounds: int,
    step: Callable[[int, int], Awaitable[float]],
    *,
    time_limit: float = 60.0,
) -> LoopRun:
    """``senders`` tasks each run ``step(sender, round)`` ``rounds`` times in a row.

    ``step`` returns one latency in seconds or raises (counted by
    ``classify``). Stops starting new rounds after ``time_limit`` seconds.
    """
    run = LoopRun()
    deadline = time.monotonic() + time_limit

    async def sender(index: int) -> None:
        for round_ in range(rounds):
            if time.monotonic() > deadline:
                run.errors["time limit"] += rounds - round_
                return
            try:
                run.latencies.append(await step(index, round_))
            except Exception as error:  # noqa: BLE001 - counted, the run goes on
                run.errors[classify(error)] += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    run.seconds = time.perf_counter() - started
    return run


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def bench_scale() -> float:
    """``BENCH_SCALE`` (default 1): multiply socket counts and rounds by it for a quick run."""
    try:
        return max(0.01, float(os.environ.get("BENCH_SCALE", "1")))
    except ValueError:
        return 1.0


def scaled(count: int, minimum: int = 1) -> int:
    return max(minimum, round(count * bench_scale()))
