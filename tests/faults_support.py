"""Processes and network pieces for the fault, abuse and secrets tests.

* ``RedisServer``: a redis-server of the test's own on a free port, to stop,
  kill and start again (the machine's shared Redis is never touched).
* ``DaphneProcess``: the demo site in a daphne process that can be killed and
  started again *on the same address*: the listening socket is bound here and
  handed to each incarnation (``--fd``), as a process manager with socket
  activation would.
* ``TcpForwarder``: a TCP relay between a server process and its database,
  to cut: refuse new connections, or drop the live ones the moment a given
  statement goes by.
* ``raw_websocket``: a WebSocket handshake on a plain socket, for a client
  that stops reading.

``tests/servers.py`` has a ``daphne()`` context manager too; it cannot kill
or restart its process or pass daphne arguments, hence ``DaphneProcess``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from didit_channels.testing import signed_webhook, status_payload
from tests.conftest import ENCRYPTION_KEY, WEBHOOK_SECRET, service_unavailable
from tests.servers import fetch_ticket, stop_process, subprocess_database_url

ROOT = Path(__file__).resolve().parent.parent
SERVER_SETTINGS = "tests.faults_site_settings"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --- Redis ---------------------------------------------------------------------


class RedisServer:
    """A redis-server of our own: no persistence, so a restart starts empty."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.process = subprocess.Popen(  # noqa: S603 - our binary, our arguments
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._pong, 10, f"redis-server on port {self.port}")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop it (SIGKILL by default: no goodbye to its clients)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open and nothing is answered, as
        when Redis stalls or the network to it drops packets."""
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started ``RedisServer``, stopped afterwards (skips if redis-server is missing)."""
    redis = RedisServer()
    if redis.binary is None:
        service_unavailable("redis-server is not installed (the fault tests start their own)")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


# --- the site in daphne processes ----------------------------------------------


def server_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Environment of a daphne process serving the demo site on the test database."""
    return {
        "DJANGO_SETTINGS_MODULE": SERVER_SETTINGS,
        "DATABASE_URL": subprocess_database_url(),
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # JWTs minted here verify there
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DIDIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DIDIT_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "PYTHONPATH": str(ROOT),
        **extra,
    }


class DaphneProcess:
    """The demo site in a daphne process, killable and restartable on one address."""

    def __init__(self, env: dict[str, str], *args: str, access_log: bool = False) -> None:
        self.env = {**os.environ, **env}
        self.args = list(args)
        self.workdir = Path(tempfile.mkdtemp(prefix="didit-faults-"))
        self.log_path = self.workdir / "daphne.log"
        self.access_log_path = self.workdir / "access.log" if access_log else None
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/didit/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        access = ["--access-log", str(self.access_log_path)] if self.access_log_path else []
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "--fd",
                    str(self.listener.fileno()),
                    *access,
                    *self.args,
                    "project.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(self.listener.fileno(),),
            )

        def ready() -> bool:
            assert self.process.poll() is None, self.log()[-3000:]
            try:
                # 401 proves Django is loaded and routing.
                return httpx.post(f"{self.url}/didit/api/tickets/", timeout=2).status_code == 401
            except httpx.TransportError:
                return False

        wait_for(ready, 30, "daphne to answer", interval=0.1)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as when the machine or the OOM killer strikes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)

    def close(self) -> None:
        self.stop()
        self.listener.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def daphne_process(env: dict[str, str], *args: str, access_log: bool = False):
    server = DaphneProcess(env, *args, access_log=access_log)
    try:
        server.start()
        yield server
    finally:
        server.close()


def post_webhook(base: str, owner, session_id: str, status: str, **fields) -> httpx.Response:
    payload = status_payload(session_id, status, vendor_data=str(owner.pk), **fields)
    body, headers = signed_webhook(payload, WEBHOOK_SECRET)
    return httpx.post(
        f"{base}/didit/webhook/",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )


# --- a TCP relay to cut ------------------------------------------------------------


class TcpForwarder:
    """Relays 127.0.0.1:<port> to ``target``, until told to fail.

    ``refuse()``: new connections are accepted and closed at once (the
    database is unreachable); ``resume()`` undoes it. ``cut_when(marker)``:
    the first client→server chunk containing ``marker`` is not passed on and
    every live connection is dropped (the database went away mid-statement).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._refusing = False
        self._marker: bytes | None = None
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def refuse(self) -> None:
        with self._lock:
            self._refusing = True
        self.drop_all()

    def resume(self) -> None:
        with self._lock:
            self._refusing = False
            self._marker = None

    def cut_when(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    def drop_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._closed = True
        self.server.close()
        self.drop_all()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, 5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_server: bool) -> None:
        tail = b""
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            if to_server:
                with self._lock:
                    marker = self._marker
                # The marker may straddle two chunks: look at the end of the last one too.
                if marker is not None and marker in tail + chunk:
                    with self._lock:
                        self._marker = None
                        self.cuts += 1
                    self.drop_all()
                    return
                tail = chunk[-256:]
            try:
                sink.sendall(chunk)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# --- a client that stops reading ---------------------------------------------------


def raw_websocket(
    port: int, path: str, *, origin: str, subprotocols: list[str] = (), receive_buffer: int = 0
) -> tuple[socket.socket, bytes]:
    """Open a WebSocket on a plain socket; (socket, bytes read past the 101 response).

    ``receive_buffer`` shrinks the socket's kernel receive buffer (set before
    connecting, so the window is small from the start).
    """
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Origin: {origin}",
    ]
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin1"))
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed during the handshake: {received!r}"
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


class FrameReader:
    """Reads the server's (unmasked) text frames off a raw socket as JSON.

    ``chunk`` bytes per ``recv``, sleeping ``pause`` seconds after each: a
    client as slow as that.
    """

    def __init__(
        self, sock: socket.socket, buffered: bytes = b"", *, chunk: int = 65536, pause: float = 0
    ) -> None:
        self.sock, self.data, self.chunk, self.pause = sock, buffered, chunk, pause

    def _frame_length(self) -> tuple[int, int] | None:
        """(header length, payload length) of the frame at the head of the buffer, if whole."""
        data = self.data
        if len(data) < 2:
            return None
        length, offset = data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            if len(data) < 10:
                return None
            length, offset = int.from_bytes(data[2:10], "big"), 10
        return (offset, length) if len(data) >= offset + length else None

    def next(self) -> dict:
        while (head := self._frame_length()) is None:
            received = self.sock.recv(self.chunk)
            assert received, "the server closed the socket"
            self.data += received
            if self.pause:
                time.sleep(self.pause)
        offset, length = head
        opcode = self.data[0] & 0x0F
        assert opcode == 0x1, f"expected a text frame, got opcode {opcode}: {self.data[:40]!r}"
        frame = json.loads(self.data[offset : offset + length])
        self.data = self.data[offset + length :]
        return frame

    def frames(self, count: int) -> list[dict]:
        return [self.next() for _ in range(count)]


def closed_by_server(sock: socket.socket, timeout: float) -> tuple[bool, int]:
    """Read and drop everything until the server closes the connection: (closed?, bytes read)."""
    sock.settimeout(timeout)
    read = 0
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return True, read
            read += len(chunk)
    except ConnectionResetError:
        return True, read
    except TimeoutError:
        return False, read


def send_text_frame(sock: socket.socket, text: str) -> None:
    """Send one masked text frame (clients must mask)."""
    payload = text.encode("utf-8")
    mask = secrets.token_bytes(4)
    header = bytes([0x81])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    elif len(payload) < 1 << 16:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    sock.sendall(header + mask + masked)


class LiveClient:
    """A client of the live socket as the README's example behaves.

    It remembers every status id it was given (``ids``) and, on each
    reconnect, resumes after the last one. ``ids`` strictly increasing and
    equal to what was sent is "nothing missing, nothing doubled".
    """

    def __init__(self, user) -> None:
        self.user = user
        self.ids: list[int] = []
        self.cursor: int | None = None
        self.ws = None

    @property
    def last(self) -> int:
        return self.ids[-1] if self.ids else (self.cursor or 0)

    def _note(self, frame: dict) -> None:
        if frame["type"] == "status":
            self.ids.append(frame["id"])

    async def connect(self, server, *, resume: bool = True) -> int | None:
        """Open a socket with a fresh ticket; resume when it has been connected before.

        Returns None when open and greeted, else the code the server closed it
        with, or the HTTP status it refused the handshake with (below 1000).
        """
        ticket = await asyncio.to_thread(fetch_ticket, server.url, self.user)
        try:
            self.ws = await connect(
                f"{server.ws_url}?ticket={ticket}", origin=server.url, ping_interval=None
            )
        except InvalidStatus as refused:
            return refused.response.status_code
        try:
            hello = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        except ConnectionClosed:
            return self.ws.close_code
        assert hello["type"] == "hello", hello
        assert json.loads(await asyncio.wait_for(self.ws.recv(), 10))["type"] == "snapshot"
        if self.cursor is None:
            self.cursor = hello["cursor"]
        elif resume:
            await self.ws.send(json.dumps({"type": "resume", "after": self.last}))
            while (frame := json.loads(await asyncio.wait_for(self.ws.recv(), 10)))[
                "type"
            ] != "resumed":
                self._note(frame)
        return None

    async def receive(self, count: int, timeout: float = 10) -> list[int] | int:
        """The ids of the next ``count`` status frames, or the close code if the server
        closes the socket first (``TimeoutError`` if it does neither: a deaf socket)."""
        got: list[int] = []
        deadline = time.monotonic() + timeout
        try:
            while len(got) < count:
                remaining = deadline - time.monotonic()
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), max(remaining, 0.01)))
                if frame["type"] == "status":
                    self._note(frame)
                    got.append(frame["id"])
        except ConnectionClosed:
            return self.ws.close_code
        return got

    async def until_closed(self, timeout: float = 10) -> int | None:
        """Read (and note) frames until the connection ends; its close code (1006: dropped)."""
        try:
            while True:
                self._note(json.loads(await asyncio.wait_for(self.ws.recv(), timeout)))
        except ConnectionClosed:
            return self.ws.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def db(function, *args):
    """``function(*args)`` in a worker thread, closing that thread's database connection after
    (a connection left open in a pool thread keeps the PostgreSQL test database from being
    dropped)."""

    def run():
        from django.db import connection

        try:
            return function(*args)
        finally:
            connection.close()

    return await asyncio.to_thread(run)
