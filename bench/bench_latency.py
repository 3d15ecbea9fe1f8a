"""Benchmark 1: webhook-to-socket latency, against the bare Channels baseline, same run.

From sending a signed webhook until the owner's socket has the status frame,
p50 and p99, at 1 and at 20 concurrent senders (closed loop: a sender sends
its next webhook once its socket has the previous one). Each sender is its
own user with one open socket; each webhook is a new session of that user
(``status.updated``, ``Approved``, V2 + raw signatures, no decision).

The baseline does the same over ``bench/baseline``: a plain view that
``group_send``s the frame to the sender's group and to a shared group (the app
publishes to the owner's group and the admin group), a consumer forwarding it.

Blocks alternate between app and baseline so drift hits both alike.
Target: app p50 <= 1.0x the baseline's, p99 <= 1.2x.

Then a burst: 500 signed webhooks released at once, each on its own
connection; every one must be answered 200 and reach its owner's socket.

Run: ``python -m bench.bench_latency`` (``BENCH_SCALE=0.3`` for a quick look).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from bench import bench_support, harness, loadgen

BLOCKS = 3
BURST = 500
TARGET_P50 = 1.0
TARGET_P99 = 1.2


async def measure(s: bench_support.Stack, users: list, tokens: list[str]) -> dict[str, object]:
    from didit_channels.testing import signed_webhook, status_payload

    senders_max = len(users)
    ticket_client = loadgen.HttpClient(s.app.port)
    app_inboxes, bare_inboxes = [], []
    for index, token in enumerate(tokens):
        ws, _ = await loadgen.open_socket(await s.ticket_url(ticket_client, token), origin=s.origin)
        app_inboxes.append(loadgen.Inbox(ws))
        ws, _ = await loadgen.open_socket(s.bare_url(f"u{index}", "admins"))
        bare_inboxes.append(loadgen.Inbox(ws))
    ticket_client.close()
    loadgen.calm_gc()

    async def app_step(client: loadgen.HttpClient, sender: int) -> float:
        session_id = f"lat-{s.run_id}-{sender}-{uuid.uuid4().hex[:12]}"
        payload = status_payload(
            session_id, "Approved", vendor_data=str(users[sender].pk), event_id=str(uuid.uuid4())
        )
        body, headers = signed_webhook(payload, harness.BENCH_WEBHOOK_SECRET)
        headers["Content-Type"] = "application/json"
        arrived = app_inboxes[sender].expect(
            lambda f: f.get("type") == "status" and f.get("session_id") == session_id
        )
        started = time.perf_counter()
        response = await client.request("POST", "/didit/webhook/", body=body, headers=headers)
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}")
        return await asyncio.wait_for(arrived, 10) - started

    async def bare_step(client: loadgen.HttpClient, sender: int) -> float:
        marker = uuid.uuid4().hex
        # A frame of the app's size, so both sides move as many bytes.
        body = json.dumps(
            {
                "type": "status",
                "id": 123456,
                "session_id": f"lat-{s.run_id}-{sender}-{marker[:12]}",
                "status": "Approved",
                "previous_status": None,
                "webhook_type": "status.updated",
                "occurred_at": "2026-01-01T00:00:00+00:00",
                "user": 1234,
                "m": marker,
            }
        ).encode()
        arrived = bare_inboxes[sender].expect(lambda f: f.get("m") == marker)
        started = time.perf_counter()
        response = await client.request("POST", f"/push/?group=u{sender}&group=admins", body=body)
        if response.status != 200:
            raise RuntimeError(f"push answered {response.status}")
        return await asyncio.wait_for(arrived, 10) - started

    async def run(which: str, senders: int, rounds: int) -> loadgen.LoopRun:
        port = s.app.port if which == "app" else s.bare.port
        step_of = app_step if which == "app" else bare_step
        clients = [loadgen.HttpClient(port) for _ in range(senders)]
        try:
            return await loadgen.closed_loop(
                senders, rounds, lambda i, _r: step_of(clients[i], i), time_limit=120
            )
        finally:
            for client in clients:
                client.close()

    # Warm-up: imports, database and layer connections, thread pool.
    await run("app", min(5, senders_max), 5)
    await run("bare", min(5, senders_max), 5)

    figures: dict[str, object] = {}
    for senders, rounds in ((1, loadgen.scaled(60, 10)), (senders_max, loadgen.scaled(10, 3))):
        runs: dict[str, list[float]] = {"app": [], "bare": []}
        errors: dict[str, int] = {}
        for block in range(BLOCKS):
            order = ["app", "bare"] if block % 2 == 0 else ["bare", "app"]
            for which in order:
                result = await run(which, senders, rounds)
                runs[which].extend(result.latencies)
                for label, count in result.errors.items():
                    errors[f"{which} {label}"] = errors.get(f"{which} {label}", 0) + count
        app = harness.percentiles(runs["app"], (50, 99))
        bare = harness.percentiles(runs["bare"], (50, 99))
        p50_ratio = bench_support.ratio(app["p50"], bare["p50"])
        p99_ratio = bench_support.ratio(app["p99"], bare["p99"])
        figures.update(
            {
                f"x{senders} app p50 / p99 ms": f"{app['p50']:.2f} / {app['p99']:.2f}",
                f"x{senders} bare p50 / p99 ms": f"{bare['p50']:.2f} / {bare['p99']:.2f}",
                f"x{senders} ratio p50 (target <= {TARGET_P50})": p50_ratio,
                f"x{senders} ratio p99 (target <= {TARGET_P99})": p99_ratio,
                f"x{senders} samples app / bare": f"{len(runs['app'])} / {len(runs['bare'])}",
                f"x{senders} errors": errors or "none",
            }
        )
        figures[f"x{senders} verdict"] = (
            f"p50 {bench_support.verdict(p50_ratio <= TARGET_P50)}, "
            f"p99 {bench_support.verdict(p99_ratio <= TARGET_P99)}"
        )

    # A burst: BURST webhooks released at once, each on its own connection, for
    # new sessions of the 20 users; every one must be answered 200 and reach
    # its owner's socket.
    size = loadgen.scaled(BURST, 20)
    gate = asyncio.Event()
    answers: dict[str, int] = {}
    undelivered = 0
    burst_latencies: list[float] = []

    async def one(index: int) -> None:
        nonlocal undelivered
        sender = index % senders_max
        session_id = f"burst-{s.run_id}-{index}"
        payload = status_payload(
            session_id, "Approved", vendor_data=str(users[sender].pk), event_id=session_id
        )
        body, headers = signed_webhook(payload, harness.BENCH_WEBHOOK_SECRET)
        headers["Content-Type"] = "application/json"
        arrived = app_inboxes[sender].expect(lambda f: f.get("session_id") == session_id)
        client = loadgen.HttpClient(s.app.port, timeout=60)
        await gate.wait()
        started = time.perf_counter()
        try:
            response = await client.request("POST", "/didit/webhook/", body=body, headers=headers)
            label = str(response.status)
        except Exception as error:  # noqa: BLE001 - counted
            label = loadgen.classify(error)
        finally:
            client.close()
        answers[label] = answers.get(label, 0) + 1
        try:
            burst_latencies.append(await asyncio.wait_for(arrived, 30) - started)
        except Exception:  # noqa: BLE001
            undelivered += 1

    tasks = [asyncio.create_task(one(i)) for i in range(size)]
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    gate.set()
    await asyncio.gather(*tasks)
    burst_seconds = time.perf_counter() - started
    errors = {k: v for k, v in answers.items() if k != "200"}
    figures.update(
        {
            f"burst of {size} webhooks: answered 200": answers.get("200", 0),
            f"burst of {size} webhooks: errors": errors or "none",
            f"burst of {size} webhooks: undelivered": undelivered,
            f"burst of {size} webhooks: seconds": burst_seconds,
            f"burst of {size} webhooks: verdict (zero errors)": bench_support.verdict(
                not errors and not undelivered
            ),
        }
    )

    for inbox in app_inboxes + bare_inboxes:
        await inbox.stop()
    await loadgen.close_all([i.ws for i in app_inboxes + bare_inboxes])
    return figures


def main() -> None:
    with bench_support.stack() as s:
        users = s.make_users(20)
        tokens = [s.jwt(user) for user in users]
        figures = asyncio.run(measure(s, users, tokens))
        figures["server errors"] = bench_support.server_errors(s.app)
    harness.print_figures(
        f"webhook-to-socket latency vs bare Channels (daphne, {bench_support.layer_name()} "
        f"layer, {bench_support.describe_machine()})",
        figures,
        note="closed loop; blocks alternate app/bare; ratios are app / bare",
    )


if __name__ == "__main__":
    main()
