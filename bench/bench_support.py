"""What the scale benchmarks (bench_latency, bench_fanout, bench_handshake, bench_idle) share.

``Stack`` starts, in one ``with``, the two servers a benchmark compares:

* ``app``: the demo site as ``make demo`` serves it (``bench.settings``),
  on a fresh database (a temporary SQLite file, or ``BENCH_DATABASE_URL``,
  migrated), with the demo's channel layer (``REDIS_URL`` set: Redis);
* ``bare``: the bare Channels baseline (``bench/baseline``), on the same
  channel layer.

Both are single daphne processes on 127.0.0.1. This process is configured as
the app's Django too (same settings, database, secret key), so it creates
users, mints JWTs and issues tickets directly where a benchmark is not
measuring those steps. Everything the benchmark *measures* goes over the
wire: ``ticket_url`` asks ``POST /didit/api/tickets/`` like a browser would.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench import harness, loadgen

APP_SETTINGS = "bench.settings"
BARE_SETTINGS = "bench.baseline.settings"
BARE_APP = "bench.baseline.asgi:application"


def describe_machine() -> str:
    cpus = os.cpu_count()
    model = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0]
    return f"{platform.node()}, {cpus} CPUs {model}, load {load:.2f}".strip()


def layer_name() -> str:
    return "Redis Pub/Sub" if os.environ.get("REDIS_URL") else "in-memory"


@dataclass
class Stack:
    app: harness.Server
    bare: harness.Server
    env: dict[str, str]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    next_pk: int = field(default_factory=lambda: random.randrange(10**8, 10**9, 10**5))

    # --- Django, in this process --------------------------------------------------

    def make_users(self, count: int, *, admins: bool = False, prefix: str = "u") -> list[Any]:
        """``count`` active users (in "Verification admins" with ``admins``), made in bulk."""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.hashers import make_password
        from django.contrib.auth.models import Group

        model = get_user_model()
        password = make_password(None)  # unusable: benchmarks authenticate with JWTs
        names = [f"{prefix}-{self.run_id}-{n}" for n in range(count)]
        # Primary keys of our own, far from 1: the per-user socket registry and
        # the user groups live in Redis, which outlives the fresh database, so
        # a user 1 of this run must not inherit the sockets of a user 1 of the
        # run before (whose server was stopped before it could release them).
        first = self.next_pk
        self.next_pk += count
        model.objects.bulk_create(
            [
                model(pk=first + n, username=name, password=password, is_active=True)
                for n, name in enumerate(names)
            ],
            batch_size=1000,
        )
        users = list(model.objects.filter(username__in=names).order_by("pk"))
        if admins:
            group = Group.objects.get(name="Verification admins")
            through = model.groups.through
            through.objects.bulk_create(
                [through(user_id=user.pk, group_id=group.pk) for user in users], batch_size=1000
            )
        return users

    def jwt(self, user: Any) -> str:
        from rest_framework_simplejwt.tokens import AccessToken

        return str(AccessToken.for_user(user))

    def issue_tickets(self, users: list[Any]) -> list[str]:
        """One ticket per user, straight into the database (not timed by any benchmark)."""
        from didit_channels.live import tickets

        return [tickets.issue(user).ticket for user in users]

    # --- over the wire ------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return self.app.url

    def socket_url(self, ticket: str) -> str:
        return f"{self.app.ws_url}/ws/didit/?ticket={ticket}"

    async def ticket_url(self, client: loadgen.HttpClient, token: str) -> str:
        """``POST /didit/api/tickets/`` with a JWT, then the socket URL carrying the ticket."""
        response = await client.request(
            "POST",
            "/didit/api/tickets/",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        if response.status != 201:
            raise RuntimeError(f"ticket request answered {response.status}")
        return self.socket_url(response.json()["ticket"])

    def bare_url(self, *groups: str) -> str:
        query = "&".join(f"group={g}" for g in groups) or "group=all"
        return f"{self.bare.ws_url}/ws/?{query}"


@contextlib.contextmanager
def stack(*, app_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Both servers, running; this process configured as the app's Django."""
    loadgen.raise_nofile(20000)
    with tempfile.TemporaryDirectory(prefix="didit-bench-scale-") as directory:
        env = harness.sqlite_env(directory)
        if os.environ.get("BENCH_DATABASE_URL"):
            env["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
        env.update(app_env or {})
        harness.migrate(APP_SETTINGS, env)
        # This process becomes the app's Django: same settings, database and keys.
        os.environ.update(harness.base_env(APP_SETTINGS, env))
        import django

        django.setup()
        # BENCH_APP_ASGI serves the app through another ASGI module (a prototype).
        application = os.environ.get("BENCH_APP_ASGI", "project.asgi:application")
        with (
            harness.daphne_server(
                APP_SETTINGS, env=env, application=application, ready_path="/bench/noop/"
            ) as app,
            harness.daphne_server(
                BARE_SETTINGS, env=env, application=BARE_APP, ready_path="/push/"
            ) as bare,
        ):
            yield Stack(app=app, bare=bare, env=env)


def server_errors(server: harness.Server, lines: int = 2000) -> str:
    """How many tracebacks the server logged, and the last exception line."""
    log = server.log_tail(lines)
    count = log.count("Traceback")
    if not count:
        return "none"
    if os.environ.get("BENCH_LOG_DIR"):
        path = os.path.join(os.environ["BENCH_LOG_DIR"], f"server-{server.port}.log")
        with open(path, "w") as out:
            out.write(log)
    last = [
        line
        for line in log.splitlines()
        if line and not line.startswith((" ", "Traceback")) and ("Error" in line or ":" in line)
    ]
    return f"{count} tracebacks, last: {(last[-1] if last else '?')[:160]}"


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("nan")


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"
