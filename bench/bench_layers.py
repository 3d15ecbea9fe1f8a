"""The layer experiment: which channel-layer configuration survives a burst with zero errors.

For each candidate layer, against the bare baseline served by one daphne
process on a fresh Redis key prefix:

1. 500 WebSocket handshakes released at once, each socket joining its own
   group and a shared one (as the app joins the user's group and the admin
   group); errors by class, handshake p50/p99, the burst's rate.
2. 500 pushes released at once, one HTTP request each (the webhook shape:
   a view that ``group_send``s), every socket waiting for its own frame;
   HTTP errors, undelivered frames, push-to-receive p50/p99.
3. One push to the shared group of all 500 sockets: time until the last has it.
4. Push-to-receive latency, closed loop, at 1 and at 20 concurrent senders.
5. Sockets the server closed by itself while idle for 12 s (a consumer that
   crashed), and the Redis connections the server held (``CLIENT LIST``).

Needs ``REDIS_URL``. ``make bench`` compares the stock layer with the demo's
choice (Pub/Sub); ``python -m bench.bench_layers all`` (or ``BENCH_LAYERS=all``)
runs every candidate, ``... pubsub`` those whose name contains "pubsub".
``BENCH_SCALE=0.2`` for a quick look. Results and the decision are in
docs/readme/scale.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

import redis

from bench import harness, loadgen

BASELINE = "bench.baseline.settings"
BASELINE_APP = "bench.baseline.asgi:application"
IDLE_SECONDS = 12


def candidates(redis_url: str) -> dict[str, dict]:
    core = "channels_redis.core.RedisChannelLayer"
    # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s that
    # channels_redis blocks in BZPOPMIN: on a busy loop the read times out first
    # and the consumer waiting in receive() dies. A longer socket timeout fixes it.
    tuned_host = {"address": redis_url, "max_connections": 1000, "socket_timeout": 15}
    return {
        "stock RedisChannelLayer": {"BACKEND": core, "CONFIG": {"hosts": [redis_url]}},
        "RedisChannelLayer, max_connections=1000": {
            "BACKEND": core,
            "CONFIG": {"hosts": [{"address": redis_url, "max_connections": 1000}]},
        },
        "RedisChannelLayer, max_connections=1000, socket_timeout=15, capacity=5000": {
            "BACKEND": core,
            "CONFIG": {"hosts": [tuned_host], "capacity": 5000},
        },
        "RedisChannelLayer, blocking pool of 64, socket_timeout=15, capacity=5000": {
            "BACKEND": "bench.baseline.layers.BlockingPoolRedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": redis_url,
                        "max_connections": 64,
                        "timeout": 20,
                        "socket_timeout": 15,
                    }
                ],
                "capacity": 5000,
            },
        },
        "RedisPubSubChannelLayer": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        },
    }


def redis_connections(redis_url: str, name: str) -> int:
    """Connections whose client name is ``name`` (the layer's pools are named per run)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for entry in client.client_list() if entry.get("name") == name)
    finally:
        client.close()


async def exercise(port: int, size: int) -> dict[str, object]:
    base = f"ws://127.0.0.1:{port}/ws/"

    async def target(index: int) -> loadgen.Target:
        return f"{base}?group=u{index}&group=shared", None

    burst = await loadgen.connect_burst(size, target, timeout=15, time_limit=90)
    figures: dict[str, object] = {
        "handshakes ready": f"{burst.ready}/{size}",
        "handshake errors": burst.error_text(),
        "handshakes/s": burst.rate,
        **{f"handshake {k} ms": v for k, v in harness.percentiles(burst.ready_times).items()},
    }
    inboxes = [loadgen.Inbox(ws) for ws in burst.sockets]
    # The socket for group u<i> is whichever opened i-th; recover i from the URL.
    by_group = {}
    for ws, inbox in zip(burst.sockets, inboxes, strict=True):
        query = ws.request.path.split("?", 1)[1]
        by_group[query.split("&")[0].split("=")[1]] = inbox

    # 2. one push per socket, all at once
    gate = asyncio.Event()
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    answered_at: list[float] = []
    undelivered = 0

    async def push(group: str, inbox: loadgen.Inbox) -> None:
        nonlocal undelivered
        marker = f"m-{group}"
        arrived = inbox.expect(lambda frame: frame.get("m") == marker)
        client = loadgen.HttpClient(port, timeout=30)
        await gate.wait()
        started = time.perf_counter()
        try:
            response = await client.request(
                "POST",
                f"/push/?group={group}",
                body=json.dumps({"m": marker}).encode(),
                headers={"Content-Type": "application/json"},
            )
            label = str(response.status)
        except Exception as error:  # noqa: BLE001
            label = loadgen.classify(error)
        finally:
            client.close()
        statuses[label] = statuses.get(label, 0) + 1
        answered_at.append(time.perf_counter())
        try:
            latencies.append(await asyncio.wait_for(arrived, 10) - started)
        except Exception:  # noqa: BLE001
            undelivered += 1

    tasks = [asyncio.create_task(push(g, i)) for g, i in by_group.items()]
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 90)
    push_seconds = max(answered_at, default=started) - started
    errors = {k: v for k, v in statuses.items() if k != "200"}
    figures.update(
        {
            "pushes answered 200": f"{statuses.get('200', 0)}/{len(by_group)}",
            "push errors": ", ".join(f"{k}: {v}" for k, v in errors.items()) or "none",
            "undelivered": undelivered,
            "pushes answered/s": len(by_group) / push_seconds if push_seconds else 0.0,
            **{f"push {k} ms": v for k, v in harness.percentiles(latencies).items()},
        }
    )

    # 3. one push to everybody
    if inboxes:
        arrivals = [inbox.expect(lambda frame: frame.get("m") == "all") for inbox in inboxes]
        client = loadgen.HttpClient(port)
        started = time.perf_counter()
        response = await client.request("POST", "/push/?group=shared", body=b'{"m": "all"}')
        client.close()
        figures["fan-out push status"] = response.status
        done, _ = await asyncio.wait(arrivals, timeout=10)
        got = [f.result() - started for f in done if not f.exception()]
        figures["fan-out delivered"] = f"{len(got)}/{len(inboxes)}"
        figures["fan-out last ms"] = max(got) * 1000 if got else float("nan")

    # 4. push-to-receive latency at 1 and 20 closed-loop senders, each to its own socket
    groups = list(by_group)

    for senders, rounds in ((1, loadgen.scaled(200, 20)), (20, loadgen.scaled(20, 5))):
        clients = [loadgen.HttpClient(port) for _ in range(senders)]

        async def step(sender: int, round_: int, clients=clients, senders=senders) -> float:
            group = groups[sender % len(groups)]
            marker = f"l{senders}-{sender}-{round_}"
            arrived = by_group[group].expect(lambda frame, m=marker: frame.get("m") == m)
            started = time.perf_counter()
            response = await clients[sender].request(
                "POST", f"/push/?group={group}", body=json.dumps({"m": marker}).encode()
            )
            if response.status != 200:
                raise RuntimeError(f"push answered {response.status}")
            return await asyncio.wait_for(arrived, 10) - started

        run = await loadgen.closed_loop(senders, rounds, step, time_limit=60)
        for client in clients:
            client.close()
        figures.update(
            {
                f"latency x{senders} {k} ms": v
                for k, v in harness.percentiles(run.latencies, (50, 99)).items()
            }
        )
        if run.errors:
            figures[f"latency x{senders} errors"] = dict(run.errors)

    # 5. sit idle past two of the layer's 5 s blocking reads, then count the
    # sockets the server has closed on its own (a consumer that crashed).
    await asyncio.sleep(IDLE_SECONDS)
    figures["sockets dropped by server"] = sum(
        1 for inbox in inboxes if inbox.closed_code is not None
    )
    for inbox in inboxes:
        await inbox.stop()
    await loadgen.close_all(burst.sockets)
    return figures


# What `make bench` compares; BENCH_LAYERS=all (or a name fragment) runs others.
DEFAULT_CANDIDATES = ("stock RedisChannelLayer", "RedisPubSubChannelLayer")


def run(size: int, only: str | None = None) -> None:
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        print("bench_layers: set REDIS_URL (the experiment compares Redis layers).")
        return
    loadgen.raise_nofile(4 * size + 1024)
    for label, layer in candidates(redis_url).items():
        if only is None and label not in DEFAULT_CANDIDATES:
            continue
        if only and only != "all" and only.lower() not in label.lower():
            continue
        run_id = uuid.uuid4().hex[:8]
        name = f"didit-bench-{run_id}"
        layer = json.loads(json.dumps(layer))
        layer["CONFIG"]["prefix"] = f"bench-{run_id}"
        # Name the server's Redis connections so they can be counted afterwards.
        hosts = layer["CONFIG"]["hosts"]
        hosts[0] = hosts[0] if isinstance(hosts[0], dict) else {"address": hosts[0]}
        hosts[0]["client_name"] = name
        env = {"BENCH_CHANNEL_LAYERS": json.dumps({"default": layer})}
        with harness.daphne_server(
            BASELINE, env=env, application=BASELINE_APP, ready_path="/push/"
        ) as server:
            figures = asyncio.run(exercise(server.port, size))
            figures["redis connections held"] = redis_connections(redis_url, name)
            log = server.log_tail(400)
        tracebacks = log.count("Traceback")
        last_error = next((line for line in reversed(log.splitlines()) if "Error" in line), "none")
        figures["server tracebacks"] = tracebacks
        if tracebacks and os.environ.get("BENCH_LOG_DIR"):
            path = os.path.join(os.environ["BENCH_LOG_DIR"], f"layers-{run_id}.log")
            with open(path, "w") as out:
                out.write(log)
            figures["server log"] = path
        figures["last server error"] = last_error.strip()[:120]
        harness.print_figures(f"layer: {label} ({size} at once)", figures)


if __name__ == "__main__":
    run(
        loadgen.scaled(500, 10),
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_LAYERS"),
    )
