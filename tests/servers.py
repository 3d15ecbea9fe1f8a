"""Real server processes for tests: daphne serving the demo site on the test database.

Shared by the tests that need what only separate processes show (several
servers sharing Redis, a real browser, real TLS, faults).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.db import connection
from rest_framework_simplejwt.tokens import AccessToken

ROOT = Path(__file__).resolve().parent.parent


def subprocess_database_url() -> str:
    """The test database this process uses, as a DATABASE_URL another process can open.

    Data the server must see has to be committed: use ``transactional_db``.
    """
    if connection.vendor == "sqlite":
        return f"sqlite:///{connection.settings_dict['NAME']}"
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


@contextlib.contextmanager
def daphne(env: dict[str, str], *, log_path: Path | None = None) -> Iterator[str]:
    """daphne serving ``project.asgi:application`` with ``env`` added; yields its base URL.

    The listening socket is bound here on a port the kernel picks and handed
    over (``--fd``), so no port is raced for. Ready once ``/`` answers 200.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    process_env = {**os.environ, **env}
    process_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the server is truly async
    if log_path is None:
        log_file = tempfile.NamedTemporaryFile(prefix="didit-daphne-", suffix=".log", delete=False)
        log_path, keep_log = Path(log_file.name), False
        log_file.close()
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        keep_log = True
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "--fd", str(listener.fileno())]
            + ["project.asgi:application"],
            cwd=ROOT,
            env=process_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )
    listener.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"daphne did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        stop_process(process)
        if not keep_log:
            log_path.unlink(missing_ok=True)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def fetch_ticket(base: str, user) -> str:
    """A socket ticket from ``base``'s API, authenticated with a JWT for ``user``."""
    response = httpx.post(
        f"{base}/didit/api/tickets/",
        headers={"Authorization": f"Bearer {AccessToken.for_user(user)}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["ticket"]
