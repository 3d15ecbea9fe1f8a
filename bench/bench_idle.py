"""Benchmark 4: idle capacity, 10,000 authenticated idle sockets on one server process.

Opens the sockets in batches (tickets issued straight into the database just
before each batch, so none outlives its 30 s), waits until every socket has
had its ``hello``, lets the server settle, and reads the server's resident
memory (VmRSS) before and after: memory per socket = growth / sockets. The
same for the bare baseline (a consumer joined to one group), one server at a
time, so this client never holds more than one set.

Users: one per 10 sockets (the per-user cap is 10), so sockets are spread
over many users' groups as in life.

Target: <= 40 KB per socket (a bare daphne consumer measured about 34 KB).

Needs file descriptors: this process raises its soft limit (children inherit
it) up to the hard limit; with a hard limit below ~10,500 the run is
smaller and says so. Run: ``python -m bench.bench_idle`` (``BENCH_SCALE=0.1``:
1,000 sockets).
"""

from __future__ import annotations

import asyncio
import gc
import time

from bench import bench_support, harness, loadgen

TARGET_KB = 40.0
BATCH = 500
SETTLE_SECONDS = 3.0


async def fill(
    s: bench_support.Stack, which: str, size: int, tickets_for_batch, base: int
) -> tuple[loadgen.Burst, float]:
    """Open ``size`` sockets in batches, socket slots from ``base`` on.

    Returns the combined outcome and the seconds taken.
    """
    combined = loadgen.Burst(size=size)
    started = time.perf_counter()
    for offset in range(0, size, BATCH):
        count = min(BATCH, size - offset)
        if which == "app":
            tickets = await asyncio.to_thread(tickets_for_batch, base + offset, count)

            async def target(index: int, tickets=tickets) -> loadgen.Target:
                return s.socket_url(tickets[index]), None

        else:

            async def target(index: int, offset=offset) -> loadgen.Target:
                return s.bare_url(f"u{(base + offset + index) // 10}"), None

        burst = await loadgen.connect_burst(
            count,
            target,
            concurrency=100,
            origin=s.origin if which == "app" else None,
            timeout=20,
            time_limit=120,
        )
        combined.sockets.extend(burst.sockets)
        combined.errors.update(burst.errors)
    return combined, time.perf_counter() - started


async def measure(s: bench_support.Stack, users: list, size: int) -> dict[str, object]:
    from didit_channels.live import tickets as ticket_module

    def tickets_for_batch(first: int, count: int) -> list[str]:
        return [ticket_module.issue(users[(first + i) // 10]).ticket for i in range(count)]

    figures: dict[str, object] = {}
    per_socket: dict[str, float] = {}
    for which, server in (("bare", s.bare), ("app", s.app)):
        # Warm the server up (imports, pools) with a few sockets, then start counting.
        warm, _ = await fill(s, which, 20, tickets_for_batch, 0)
        await asyncio.sleep(SETTLE_SECONDS)
        before = loadgen.rss_bytes(server.process.pid)
        burst, seconds = await fill(s, which, size, tickets_for_batch, 20)
        await asyncio.sleep(SETTLE_SECONDS)
        after = loadgen.rss_bytes(server.process.pid)
        # Every socket still open after settling (none closed by the server)?
        alive = sum(1 for ws in burst.sockets if ws.close_code is None)
        per_socket[which] = (after - before) / max(1, alive) / 1024
        figures.update(
            {
                f"{which} sockets open": f"{alive} of {size}",
                f"{which} errors": burst.error_text(),
                f"{which} connect rate per s": burst.ready / seconds if seconds else 0.0,
                f"{which} RSS before / after MB": f"{before / 2**20:.1f} / {after / 2**20:.1f}",
                f"{which} KB per socket": per_socket[which],
            }
        )
        await loadgen.close_all(burst.sockets + warm.sockets, concurrency=500)
        burst = warm = None
        gc.collect()
        await asyncio.sleep(1)
    figures["ratio app / bare per socket"] = bench_support.ratio(
        per_socket["app"], per_socket["bare"]
    )
    figures[f"verdict (<= {TARGET_KB:.0f} KB)"] = bench_support.verdict(
        per_socket["app"] <= TARGET_KB
    )
    return figures


def main() -> None:
    wanted = loadgen.scaled(10_000, 200)
    limit = loadgen.raise_nofile(2 * wanted + 1024)
    size = min(wanted, max(200, limit - 500))
    with bench_support.stack() as s:
        users = s.make_users((size + 20) // 10 + 2, prefix="idle")
        figures = asyncio.run(measure(s, users, size))
        figures["server errors"] = bench_support.server_errors(s.app)
    harness.print_figures(
        f"idle capacity: {size} authenticated idle sockets on one daphne process "
        f"({bench_support.layer_name()} layer, {bench_support.describe_machine()})",
        figures,
        note=(
            f"RSS growth / sockets; file limit {limit}"
            + ("" if size == wanted else f", asked for {wanted}")
        ),
    )


if __name__ == "__main__":
    main()
