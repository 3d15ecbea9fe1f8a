"""Helpers every benchmark shares: a real ASGI server, a light HTTP load driver, figures.

Typical use::

    env = sqlite_env(tmpdir)            # a fresh database the server and we share
    migrate("bench.settings", env)
    with daphne_server("bench.settings", env=env) as server:
        run = asyncio.run(drive_http(server.port, requests, concurrency=8))
    print_figures("webhook intake", {"req/s": run.rate, **percentiles(run.latencies)})

The server is a ``daphne`` subprocess on 127.0.0.1. Its listening socket is
bound here (port 0, so the kernel picks a free port) and handed over with
``--fd``: no race between choosing a port and binding it, and a parallel run
can never collide with ours.

``drive_http`` speaks just enough HTTP/1.1 over keep-alive connections to send
prebuilt requests and read the answers. A general-purpose client (httpx)
spends more CPU per request than a small Django view does, so with it the
client, not the server, would set the pace and hide the difference under test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# What a benchmark server runs with unless the caller's env says otherwise:
# production-like settings (DEBUG off) need a secret key, an encryption key and
# a webhook secret. Throwaway values, made per run.
BENCH_WEBHOOK_SECRET = "bench-webhook-secret-" + os.urandom(8).hex()
_BENCH_DEFAULTS = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "bench-only-" + os.urandom(24).hex(),
    "DIDIT_WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET,
    "DIDIT_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
}


# --- server -------------------------------------------------------------------


@dataclass
class Server:
    """A running server process. ``url`` is its base URL (no trailing slash)."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def base_env(settings_module: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child's environment: the bench defaults, then ours, the settings module, ``env``.

    The webhook secret is ``BENCH_WEBHOOK_SECRET`` unless ``env`` names another.
    """
    merged = {**_BENCH_DEFAULTS, **os.environ}
    # Ours must not leak into the server: the benchmark signs with its own.
    merged["DIDIT_WEBHOOK_SECRET"] = BENCH_WEBHOOK_SECRET
    merged["DJANGO_SETTINGS_MODULE"] = settings_module
    merged["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(ROOT), merged.get("PYTHONPATH", "")) if part
    )
    merged.update(env or {})
    return merged


def sqlite_env(directory: str | Path, name: str = "bench.sqlite3") -> dict[str, str]:
    """``DATABASE_URL`` for a fresh SQLite file in ``directory`` (the demo's default engine)."""
    return {"DATABASE_URL": f"sqlite:///{Path(directory) / name}"}


def manage(
    settings_module: str, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``manage.py <args>`` with the given settings; raises with its output on failure."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=base_env(settings_module, env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def migrate(settings_module: str, env: Mapping[str, str] | None = None) -> None:
    manage(settings_module, "migrate", "--noinput", env=env)


def _wait_until_ready(server: Server, ready_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    request = (
        f"GET {ready_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ).encode()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
                sock.settimeout(max(0.5, min(5.0, deadline - time.monotonic())))
                sock.sendall(request)
                if sock.recv(16).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout:.0f}s:\n{server.log_tail()}")


@contextlib.contextmanager
def daphne_server(
    settings_module: str,
    *,
    env: Mapping[str, str] | None = None,
    application: str = "project.asgi:application",
    ready_path: str = "/",
    timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> Iterator[Server]:
    """Start daphne on a free 127.0.0.1 port and yield it once it answers HTTP.

    ``ready_path`` is requested until any HTTP answer comes back (a 404 counts:
    it proves Django is loaded). The server's output goes to a temporary log
    file, shown in the error if it fails to start. Stopped on exit.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    port = listener.getsockname()[1]
    log_file = tempfile.NamedTemporaryFile(  # closed once the child has it
        prefix="didit-bench-daphne-", suffix=".log", delete=False
    )
    command = [
        sys.executable,
        "-m",
        "daphne",
        "--fd",
        str(listener.fileno()),
        "--access-log",
        os.devnull,
        *extra_args,
        application,
    ]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command,
        cwd=ROOT,
        env=base_env(settings_module, env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        pass_fds=(listener.fileno(),),
    )
    # The child holds its own copy of the socket now.
    listener.close()
    log_file.close()
    server = Server(process=process, port=port, log_path=Path(log_file.name))
    try:
        _wait_until_ready(server, ready_path, timeout)
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            server.log_path.unlink()


# --- load ---------------------------------------------------------------------


def http_request(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    """Serialise one HTTP/1.1 keep-alive request to bytes, ready for ``drive_http``."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Run:
    """What a load run measured. ``rate`` counts every answered request."""

    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, one per answer
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # connection errors, no answer
    cpu_ms: float | None = None  # server CPU per answer, when the caller measured it

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    length = 0
    close = False
    for line in header_lines:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "transfer-encoding" and "chunked" in value.lower():
            raise RuntimeError("chunked responses are not supported by drive_http")
    if length:
        await reader.readexactly(length)
    return status, close


async def drive_http(
    port: int,
    requests: Sequence[bytes],
    *,
    concurrency: int = 8,
    time_limit: float = 60.0,
) -> Run:
    """Send every prebuilt request over ``concurrency`` keep-alive connections.

    Each connection takes the next unsent request, waits for its answer, and
    goes on; a connection the server closes is reopened. Stops early when
    ``time_limit`` seconds have passed (the run then reports fewer answers).
    """
    queue = iter(enumerate(requests))
    run = Run(seconds=0.0)
    deadline = time.monotonic() + time_limit

    async def worker() -> None:
        reader = writer = None
        try:
            for _, request in queue:
                if time.monotonic() > deadline:
                    return
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                started = time.perf_counter()
                try:
                    writer.write(request)
                    status, close = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError):
                    run.failures += 1
                    writer.close()
                    reader = writer = None
                    continue
                run.latencies.append(time.perf_counter() - started)
                run.statuses[status] = run.statuses.get(status, 0) + 1
                if close:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - started
    return run


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far; None where /proc is missing.

    Divided by the requests served in between, it tells whether a server is
    CPU-bound (then its cost per request is what to cut) or waiting.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- figures ------------------------------------------------------------------


def percentiles(
    samples: Sequence[float], points: Sequence[float] = (50, 90, 99), *, scale: float = 1000.0
) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ...}`` by linear interpolation, times ``scale``.

    The default scale turns seconds into milliseconds. Empty input gives NaN.
    """
    ordered = sorted(samples)
    figures: dict[str, float] = {}
    for point in points:
        label = f"p{point:g}"
        if not ordered:
            figures[label] = math.nan
            continue
        rank = (len(ordered) - 1) * point / 100
        low, high = math.floor(rank), math.ceil(rank)
        value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
        figures[label] = value * scale
    return figures


def _format(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def print_figures(title: str, figures: Mapping[str, Any], *, note: str = "") -> None:
    """Print one benchmark's figures as an aligned block."""
    print(f"\n== {title}")
    width = max((len(name) for name in figures), default=0)
    for name, value in figures.items():
        print(f"  {name.ljust(width)}  {_format(value)}")
    if note:
        print(f"  ({note})")
    sys.stdout.flush()
