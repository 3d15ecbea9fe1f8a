"""Database work from the event loop: one worker-thread hop, with connection hygiene.

The socket, the catch-up sweep and the webhook's ASGI fast path all run their
database work through ``in_worker``: ``sync_to_async`` without thread
sensitivity (each call is self-contained, and a burst of handshakes or
webhooks must not queue behind the one thread Django's sync views share),
with Django's connection upkeep around the call, as a request would have it.

Connection upkeep differs from ``close_old_connections`` in one case.
These calls run on the event loop's default executor, whose threads live as
long as the process; a SQLite connection kept by such a thread is a file
handle, not a server resource, and opening one costs more than the queries
of a socket's handshake (Python-level setup: functions registered, PRAGMAs
run; profiled: ``scripts/profile_hotpaths.py handshake``). So on SQLite a
worker keeps its connection until a database error occurs on it, whatever
``CONN_MAX_AGE`` says; every other database follows ``CONN_MAX_AGE`` exactly (with a
connection pool, closing returns the connection to the pool).

``serialized_writes`` queues this process's SQLite writers on a lock of its
own instead of in SQLite's busy handler (see there).

Why not channels' ``database_sync_to_async``: its connection check is the one
channels' test communicator turns into a no-op while it waits, so under test
worker threads would keep PostgreSQL connections open and the test database
could not be dropped. Worker threads never hold a test's own connection, so
closing theirs is always safe.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections

T = TypeVar("T")


def tidy_connections() -> None:
    """Close this thread's connections that are broken or (except SQLite's) past their age."""
    for connection in connections.all(initialized_only=True):
        if connection.vendor == "sqlite":
            if connection.errors_occurred:
                # Django's SQLite backend calls every connection usable; after a
                # database error this one is not trusted to be.
                connection.close()
                continue
            connection.close_at = None  # no maximum age: kept while usable (module doc)
        connection.close_if_unusable_or_obsolete()


@functools.cache
def in_worker(function: Callable[..., T]) -> Callable[..., Any]:
    """``function`` as a coroutine function run in a worker thread (see the module doc).

    Cached per function: callers wrap at the call site (``in_worker(f)(...)``),
    and building asgiref's wrapper each time was 3% of a socket's handshake
    (``scripts/profile_hotpaths.py connect``).
    """

    def run(*args: Any, **kwargs: Any) -> T:
        tidy_connections()
        try:
            return function(*args, **kwargs)
        finally:
            tidy_connections()

    return sync_to_async(run, thread_sensitive=False)


# One SQLite writer at a time in this process, handed over in turn.
_sqlite_writer = threading.RLock()


@contextlib.contextmanager
def serialized_writes(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Around a write (or a writing transaction): on SQLite, wait for this process's turn.

    SQLite has one writer at a time. A second writer waits in SQLite's busy
    handler, which sleeps and polls (1, 2, 5, 10 ... up to 100 ms a try)
    rather than waking when the lock is free: with 20 webhooks at once, the
    unlucky ones slept far longer than the writes they waited for
    (``bench/bench_latency.py``, p99). Queued on a lock of this process
    instead, each takes its turn the moment the one before commits. Other
    processes still meet SQLite's own lock and busy timeout.

    A no-op on other databases, and inside a transaction that is already open
    (whose SQLite write lock may be held already: waiting here could then
    deadlock against a writer waiting for it).
    """
    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        yield
        return
    with _sqlite_writer:
        yield
