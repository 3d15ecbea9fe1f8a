"""Benchmark 2: fan-out, one change to 1,000 admin sockets; time until the last has it.

1,000 users in "Verification admins", one socket each, on one daphne process.
Each round sends one signed webhook for a new session of an ordinary user (so
only the admin group hears of it) and times, from sending it, every admin
socket's receipt of the status frame; the round's figure is the *last*
receipt. The baseline: 1,000 bare sockets in one group, one ``group_send``
from the plain view per round. Rounds alternate app / baseline.

Target: p99 of the app's time-to-last <= 250 ms.

All 1,000 sockets are read by this one client loop: parsing 1,000 frames is
inside both figures (compare the ratio as well as the absolute figure).

Run: ``python -m bench.bench_fanout`` (``BENCH_SCALE=0.2``: 200 sockets).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from bench import bench_support, harness, loadgen

TARGET_P99_MS = 250.0


async def measure(s: bench_support.Stack, admins: list, owner: object) -> dict[str, object]:
    from didit_channels.testing import signed_webhook, status_payload

    size = len(admins)
    tickets = await asyncio.to_thread(_issue, s, admins)

    async def app_target(index: int) -> loadgen.Target:
        return s.socket_url(tickets[index]), None

    async def bare_target(index: int) -> loadgen.Target:
        return s.bare_url("admins"), None

    app_burst = await loadgen.connect_burst(size, app_target, concurrency=100, origin=s.origin)
    bare_burst = await loadgen.connect_burst(size, bare_target, concurrency=100)
    figures: dict[str, object] = {
        "sockets app / bare": f"{app_burst.ready} / {bare_burst.ready} of {size}",
    }
    if app_burst.error_count or bare_burst.error_count:
        figures["connect errors app"] = app_burst.error_text()
        figures["connect errors bare"] = bare_burst.error_text()
    app_inboxes = [loadgen.Inbox(ws) for ws in app_burst.sockets]
    bare_inboxes = [loadgen.Inbox(ws) for ws in bare_burst.sockets]
    await asyncio.sleep(1.0)  # let every snapshot arrive and be dropped
    loadgen.calm_gc()

    app_client = loadgen.HttpClient(s.app.port)
    bare_client = loadgen.HttpClient(s.bare.port)

    async def app_round() -> tuple[list[float], int]:
        session_id = f"fan-{s.run_id}-{uuid.uuid4().hex[:12]}"
        payload = status_payload(
            session_id, "In Review", vendor_data=str(owner.pk), event_id=str(uuid.uuid4())
        )
        body, headers = signed_webhook(payload, harness.BENCH_WEBHOOK_SECRET)
        headers["Content-Type"] = "application/json"
        arrivals = [
            inbox.expect(lambda f: f.get("session_id") == session_id) for inbox in app_inboxes
        ]
        started = time.perf_counter()
        response = await app_client.request("POST", "/didit/webhook/", body=body, headers=headers)
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}")
        return await _collect(arrivals, started)

    async def bare_round() -> tuple[list[float], int]:
        marker = uuid.uuid4().hex
        body = json.dumps({"type": "status", "session_id": marker, "status": "In Review"})
        arrivals = [inbox.expect(lambda f: f.get("session_id") == marker) for inbox in bare_inboxes]
        started = time.perf_counter()
        response = await bare_client.request("POST", "/push/?group=admins", body=body.encode())
        if response.status != 200:
            raise RuntimeError(f"push answered {response.status}")
        return await _collect(arrivals, started)

    await app_round()  # warm-up
    await bare_round()
    lasts: dict[str, list[float]] = {"app": [], "bare": []}
    everyone: dict[str, list[float]] = {"app": [], "bare": []}
    missing = {"app": 0, "bare": 0}
    deadline = time.monotonic() + 120
    for round_ in range(loadgen.scaled(20, 5)):
        if time.monotonic() > deadline:
            break
        for which in ("app", "bare") if round_ % 2 == 0 else ("bare", "app"):
            times, lost = await (app_round() if which == "app" else bare_round())
            missing[which] += lost
            if times:
                lasts[which].append(max(times))
                everyone[which].extend(times)
            await asyncio.sleep(0.2)
    app_client.close()
    bare_client.close()

    app_last = harness.percentiles(lasts["app"], (50, 99))
    bare_last = harness.percentiles(lasts["bare"], (50, 99))
    figures.update(
        {
            "rounds": len(lasts["app"]),
            "app time-to-last p50 / p99 ms": f"{app_last['p50']:.1f} / {app_last['p99']:.1f}",
            "bare time-to-last p50 / p99 ms": f"{bare_last['p50']:.1f} / {bare_last['p99']:.1f}",
            "app every socket p50 ms": harness.percentiles(everyone["app"], (50,))["p50"],
            "bare every socket p50 ms": harness.percentiles(everyone["bare"], (50,))["p50"],
            "ratio time-to-last p50": bench_support.ratio(app_last["p50"], bare_last["p50"]),
            "undelivered app / bare": f"{missing['app']} / {missing['bare']}",
            f"verdict (p99 <= {TARGET_P99_MS:.0f} ms)": bench_support.verdict(
                app_last["p99"] <= TARGET_P99_MS and missing["app"] == 0
            ),
        }
    )
    for inbox in app_inboxes + bare_inboxes:
        await inbox.stop()
    await loadgen.close_all(app_burst.sockets + bare_burst.sockets)
    return figures


def _issue(s: bench_support.Stack, users: list) -> list[str]:
    return s.issue_tickets(users)


async def _collect(arrivals: list[asyncio.Future], started: float) -> tuple[list[float], int]:
    done, pending = await asyncio.wait(arrivals, timeout=10)
    for future in pending:
        future.cancel()
    times = [f.result() - started for f in done if not f.cancelled() and f.exception() is None]
    return times, len(arrivals) - len(times)


def main() -> None:
    size = loadgen.scaled(1000, 50)
    with bench_support.stack() as s:
        admins = s.make_users(size, admins=True, prefix="desk")
        owner = s.make_users(1, prefix="owner")[0]
        figures = asyncio.run(measure(s, admins, owner))
        figures["server errors"] = bench_support.server_errors(s.app)
    harness.print_figures(
        f"fan-out: one change to {size} admin sockets (daphne, {bench_support.layer_name()} "
        f"layer, {bench_support.describe_machine()})",
        figures,
        note="time from sending the webhook to the last socket's receipt; rounds alternate",
    )


if __name__ == "__main__":
    main()
