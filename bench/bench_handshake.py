"""Benchmark 3: handshakes, ticket plus connect, against bare Channels connects, same run.

* Sustained rate: 20 clients in a closed loop, each ``POST /didit/api/tickets/``
  (JWT), open the socket with the ticket, read ``hello``, close; repeat. The
  baseline: open a bare socket, read its hello, close. Connects per second.
  Three more loops say where the time goes: the app's connect alone (tickets
  issued beforehand), and the bare server's floor for a ticket through Django — a
  ``POST`` to a bare view answering 256 random bits (no authentication, no
  database), then a bare connect — and the same with the request answered
  straight from ASGI, no Django at all (the lowest floor an HTTP ticket can
  have on this server).
* Burst: 500 sockets released at once (ticket plus connect each, sockets held
  open until all are done), against 500 bare sockets at once; errors by class
  (``http 500``, ``close 4001``, ``timeout`` ...) and the burst's rate.

Users: 100 (5 sockets each in the burst, under the per-user cap of 10; the
sustained loop spreads its tickets over them, under the ticket throttle).

Target: app rate >= 0.8x the bare connect rate, zero errors.

Run: ``python -m bench.bench_handshake`` (``BENCH_SCALE=0.3`` for a quick look).
"""

from __future__ import annotations

import asyncio
import itertools
import time

from bench import bench_support, harness, loadgen

TARGET_RATIO = 0.8
CLIENTS = 20
BLOCKS = 3


async def sustained(
    s: bench_support.Stack, tokens: list[str], which: str, total: int, users: list | None = None
) -> dict:
    cycle = itertools.cycle(tokens)
    clients = [loadgen.HttpClient(s.app.port) for _ in range(CLIENTS)]
    bare_clients = [loadgen.HttpClient(s.bare.port) for _ in range(CLIENTS)]
    rounds = max(1, total // CLIENTS)
    issued = iter([])
    if which == "app-connect":  # tickets issued beforehand: the socket's share alone
        issued = iter(
            await asyncio.to_thread(s.issue_tickets, (users * rounds)[: CLIENTS * rounds])
        )

    async def step(client_index: int, _round: int) -> float:
        started = time.perf_counter()
        if which.startswith("app"):
            if which == "app":
                url = await s.ticket_url(clients[client_index], next(cycle))
            else:
                url = s.socket_url(next(issued))
            ws, first = await loadgen.open_socket(url, origin=s.origin)
            if first.get("type") != "hello":
                raise RuntimeError(f"first frame {first.get('type')}")
        elif which in ("bare-ticket", "raw-ticket"):
            path = "/ticket/" if which == "bare-ticket" else "/raw-ticket/"
            response = await bare_clients[client_index].request("POST", path)
            if response.status != 201:
                raise RuntimeError(f"bare ticket answered {response.status}")
            ticket = response.json()["ticket"]
            ws, _ = await loadgen.open_socket(f"{s.bare_url(f'h{client_index}')}&t={ticket}")
        else:
            ws, _ = await loadgen.open_socket(s.bare_url(f"h{client_index}"))
        elapsed = time.perf_counter() - started
        await ws.close()
        return elapsed

    run = await loadgen.closed_loop(CLIENTS, rounds, step, time_limit=60)
    for client in clients + bare_clients:
        client.close()
    return {
        "rate": len(run.latencies) / run.seconds if run.seconds else 0.0,
        "latency": harness.percentiles(run.latencies, (50, 99)),
        "errors": dict(run.errors),
        "count": len(run.latencies),
    }


async def burst(s: bench_support.Stack, tokens: list[str], which: str, size: int) -> loadgen.Burst:
    clients = [loadgen.HttpClient(s.app.port) for _ in range(size)]

    async def target(index: int) -> loadgen.Target:
        if which == "app":
            return await s.ticket_url(clients[index], tokens[index % len(tokens)]), None
        return s.bare_url(f"b{index}", "admins"), None

    result = await loadgen.connect_burst(
        size, target, origin=s.origin if which == "app" else None, timeout=20, time_limit=90
    )
    for client in clients:
        client.close()
    await loadgen.close_all(result.sockets)
    return result


async def measure(s: bench_support.Stack, users: list, tokens: list[str]) -> dict[str, object]:
    total = loadgen.scaled(600, 60)
    size = loadgen.scaled(500, 20)
    await sustained(s, tokens, "app", 40)  # warm-up
    await sustained(s, tokens, "bare", 40)
    # Five loops, in rotating order over three blocks so drift hits all alike:
    # the app (ticket + connect), the bare connect, and where the time goes —
    # the app's connect with tickets issued beforehand, and the bare server's
    # floor for "a request, then a connect" (through Django, and raw ASGI).
    kinds = ["app", "bare", "app-connect", "bare-ticket", "raw-ticket"]
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    lat: dict[str, dict] = {}
    errors: dict[str, dict] = {kind: {} for kind in kinds}
    for block in range(BLOCKS):
        for which in kinds[block:] + kinds[:block]:
            result = await sustained(s, tokens, which, total // BLOCKS, users)
            rates[which].append(result["rate"])
            lat[which] = result["latency"]
            for label, count in result["errors"].items():
                errors[which][label] = errors[which].get(label, 0) + count
            await asyncio.sleep(1)
    app_rate = loadgen.median(rates["app"])
    bare_rate = loadgen.median(rates["bare"])
    sustained_ratio = bench_support.ratio(app_rate, bare_rate)
    connect_only = {"rate": loadgen.median(rates["app-connect"])}
    floor = {"rate": loadgen.median(rates["bare-ticket"])}
    raw_floor = loadgen.median(rates["raw-ticket"])

    await asyncio.sleep(2)
    bare_burst = await burst(s, tokens, "bare", size)
    await asyncio.sleep(2)
    app_burst = await burst(s, tokens, "app", size)
    burst_ratio = bench_support.ratio(app_burst.rate, bare_burst.rate)
    app_ok = sustained_ratio >= TARGET_RATIO and app_burst.error_count == 0
    app_burst_p = harness.percentiles(app_burst.ready_times, (50, 99))
    bare_burst_p = harness.percentiles(bare_burst.ready_times, (50, 99))
    return {
        "sustained app / bare per s": f"{app_rate:.1f} / {bare_rate:.1f}",
        f"sustained ratio (target >= {TARGET_RATIO})": sustained_ratio,
        "sustained app p50 / p99 ms": f"{lat['app']['p50']:.1f} / {lat['app']['p99']:.1f}",
        "sustained bare p50 / p99 ms": f"{lat['bare']['p50']:.1f} / {lat['bare']['p99']:.1f}",
        "sustained errors app / bare": f"{errors['app'] or 'none'} / {errors['bare'] or 'none'}",
        "errors, connect only / Django floor / raw floor": (
            f"{errors['app-connect'] or 'none'} / {errors['bare-ticket'] or 'none'}"
            f" / {errors['raw-ticket'] or 'none'}"
        ),
        "connect only, ticket issued beforehand, per s": connect_only["rate"],
        "connect only ratio": bench_support.ratio(connect_only["rate"], bare_rate),
        "Django floor: bare Django view + bare connect, per s": floor["rate"],
        "Django floor ratio": bench_support.ratio(floor["rate"], bare_rate),
        "raw floor: bare ASGI request (no Django) + bare connect, per s": raw_floor,
        "raw floor ratio": bench_support.ratio(raw_floor, bare_rate),
        "app ticket + connect / Django floor": bench_support.ratio(app_rate, floor["rate"]),
        f"burst {size} ready app / bare": f"{app_burst.ready} / {bare_burst.ready}",
        "burst errors app": app_burst.error_text(),
        "burst errors bare": bare_burst.error_text(),
        "burst rate app / bare per s": f"{app_burst.rate:.1f} / {bare_burst.rate:.1f}",
        "burst ratio": burst_ratio,
        "burst app p50 / p99 ms": f"{app_burst_p['p50']:.0f} / {app_burst_p['p99']:.0f}",
        "burst bare p50 / p99 ms": f"{bare_burst_p['p50']:.0f} / {bare_burst_p['p99']:.0f}",
        "verdict": bench_support.verdict(app_ok),
    }


def main() -> None:
    with bench_support.stack() as s:
        users = s.make_users(100, prefix="hs")
        tokens = [s.jwt(user) for user in users]
        figures = asyncio.run(measure(s, users, tokens))
        figures["server errors"] = bench_support.server_errors(s.app)
    harness.print_figures(
        f"handshakes: ticket + connect vs bare connect (daphne, {bench_support.layer_name()} "
        f"layer, {bench_support.describe_machine()})",
        figures,
        note=f"sustained: {CLIENTS} clients in a closed loop; burst: all released at once",
    )


if __name__ == "__main__":
    main()
