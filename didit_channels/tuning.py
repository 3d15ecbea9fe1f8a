"""Process tuning for a server that holds many sockets: ``tune_gc()``.

Python's cyclic garbage collector pauses the whole process for a *full*
collection, and a full collection visits every tracked object: each open
socket holds a few hundred (daphne's protocol, autobahn's state, the
consumer, its tasks and queues). Measured here (bench/bench_fanout.py, 1,000
admin sockets on one daphne process): full collections of 190-240 ms every
few seconds while changes fanned out, each one a round whose last socket
waited that much longer (fan-out p99 370-420 ms, p50 140-150 ms). A burst of
short-lived objects (one change to 1,000 sockets makes tens of thousands)
is what triggers them: with the default first-generation threshold of 700
allocations, collections run in the middle of the burst, promote objects
that reference counting would have freed a moment later, and the promoted
count soon passes the quarter of the heap that starts a full collection.

``tune_gc()`` does two things, both process-wide, so the site calls it (in
its ASGI module) rather than the app doing it on import:

* ``gc.set_threshold(10_000, 50, 100)``: the first generation is collected
  after 10,000 allocations instead of 700, so most of a burst's objects die
  by reference counting before a collection sees them, and the older
  generations are collected 5 and 10 times less often than by default: a
  full collection is considered after some 50 million allocations instead
  of 70,000. Measured: no full collection in any timed round; fan-out p99
  146-218 ms in six runs of seven (one at 316). A first-generation
  collection then takes 4-9 ms, about 20 ms during a fan-out to 1,000
  sockets. (50,000 for the first generation gave a lower fan-out p99,
  137-159 ms, but single pauses of 27-48 ms in the one-sender latency runs;
  the default favours the shorter pause.)
* ``gc.freeze()``: everything alive once the site is set up (Django, its
  apps, settings, URL patterns) moves to the permanent generation, which no
  collection visits. It would never be freed anyway. A full collection that
  does happen then costs only the sockets' objects (160 ms instead of 240 at
  1,000 sockets).

Cost: cyclic garbage that outlives a first-generation collection waits
longer to be freed, until the rarer older collections (a socket that closes
leaves some); up to 10,000 young objects wait in any case (a few MB at most).
Idle memory per socket was unchanged (35.0 KB at 10,000 sockets).

All of it measured on CPython 3.11; other versions' collectors schedule
their generations differently, so measure (``bench_fanout``) before
relying on these figures there.
"""

from __future__ import annotations

import gc

DEFAULT_GC_THRESHOLD = (10_000, 50, 100)


def tune_gc(
    threshold: tuple[int, int, int] | None = DEFAULT_GC_THRESHOLD, *, freeze: bool = True
) -> None:
    """Tune this process's garbage collector for many open sockets (module doc).

    Call once, at the end of the ASGI module, after ``get_asgi_application()``
    and the routing imports, so that ``freeze`` covers the site's own objects::

        from didit_channels.tuning import tune_gc

        tune_gc()

    ``threshold`` is passed to ``gc.set_threshold`` (None leaves it alone);
    ``freeze=False`` skips ``gc.collect()`` and ``gc.freeze()``.
    """
    if threshold is not None:
        if (
            not isinstance(threshold, tuple | list)
            or len(threshold) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in threshold)
            or threshold[0] < 1
            or min(threshold) < 0
        ):
            raise ValueError(
                "tune_gc(threshold=...) takes three whole numbers, as gc.set_threshold does, "
                f"the first at least 1 (0 would turn the collector off); got {threshold!r}."
            )
        gc.set_threshold(*threshold)
    if freeze:
        gc.collect()
        gc.freeze()
