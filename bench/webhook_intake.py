"""Signed webhooks per second, against a no-op Django view on the same server, same run.

One daphne process serves the demo site (``bench.settings``: the demo plus
``/bench/noop/``) on a fresh database. Rounds alternate between the two
endpoints so drift (CPU frequency, a noisy neighbour) hits both alike:

* ``noop``: ``POST /bench/noop/`` with the very same bodies and headers;
* ``webhook``: ``POST /didit/webhook/``, each a new, genuinely signed
  ``status.updated`` for its own session (X-Signature-V2 and X-Signature,
  a ~1 KiB decision with non-ASCII names), so each request records the
  delivery, verifies both signatures, creates the session, encrypts the
  decision and the raw body, appends history and publishes after commit.

The figure of merit is ``ratio = webhook req/s / noop req/s`` (median of the
rounds); the target is at least 0.7. Afterwards the database is checked:
every webhook must have been answered 200 and applied exactly once.

Database: a fresh SQLite file (the demo's default, with its WAL / IMMEDIATE
options) unless ``BENCH_DATABASE_URL`` names another, e.g. a PostgreSQL
database the benchmark may fill with rows. ``REDIS_URL`` set: the demo's
Redis channel layer, as in the demo. ``BENCH_SCALE`` scales request counts.

Run: ``python -m bench.webhook_intake`` (``make bench`` runs every benchmark).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
import uuid

from bench import harness
from didit_channels.testing import signed_webhook, status_payload

SETTINGS = "bench.settings"
WEBHOOK_PATH = "/didit/webhook/"
NOOP_PATH = "/bench/noop/"
TARGET_RATIO = 0.7
CONCURRENCY = 8


def scale() -> float:
    try:
        return max(0.05, float(os.environ.get("BENCH_SCALE", "1")))
    except ValueError:
        return 1.0


def decision(n: int) -> dict:
    """About 1 KiB, shaped like Didit's: arrays per feature, scores as floats."""
    return {
        "session_id": f"bench-{n}",
        "status": "Approved",
        "id_verifications": [
            {
                "status": "Approved",
                "document_type": "Identity Card",
                "first_name": "José María",
                "last_name": "Müller Østergård",
                "full_name": "José María Müller Østergård",
                "date_of_birth": "1990-05-17",
                "issuing_state": "ESP",
                "address": "Calle de Alcalá 1, 28014 Madrid, España",
                "front_image": f"https://example.invalid/img/{n}/front.jpg",
                "back_image": f"https://example.invalid/img/{n}/back.jpg",
                "warnings": [],
            }
        ],
        "liveness_checks": [{"status": "Approved", "score": 97.0, "age_estimation": 33.7}],
        "face_matches": [{"status": "Approved", "score": 97.3}],
        "aml_screenings": [{"status": "Approved", "total_hits": 0, "score": 0.0}],
        "ip_analyses": [{"status": "Approved", "ip_country": "Spain", "is_vpn_or_tor": False}],
    }


def signed_requests(count: int, run_id: str) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` genuine webhooks, each for its own new session, signed now."""
    requests = []
    for n in range(count):
        session_id = f"bench-{run_id}-{n}"
        payload = status_payload(
            session_id, "Approved", event_id=str(uuid.uuid4()), decision=decision(n)
        )
        requests.append(signed_webhook(payload, harness.BENCH_WEBHOOK_SECRET))
    return requests


def as_http(path: str, signed: list[tuple[bytes, dict[str, str]]]) -> list[bytes]:
    return [
        harness.http_request("POST", path, body=body, headers=headers) for body, headers in signed
    ]


def measure(server: harness.Server, path: str, count: int, run_id: str) -> harness.Run:
    """One round; ``run.cpu_ms`` is the server's CPU time per answered request."""
    # Signed just before sending: X-Timestamp must be within 300 s.
    requests = as_http(path, signed_requests(count, run_id))
    cpu_before = harness.cpu_seconds(server.process.pid)
    run = asyncio.run(
        harness.drive_http(server.port, requests, concurrency=CONCURRENCY, time_limit=120)
    )
    cpu_after = harness.cpu_seconds(server.process.pid)
    if cpu_before is not None and cpu_after is not None and run.count:
        run.cpu_ms = 1000 * (cpu_after - cpu_before) / run.count
    return run


def applied_count(database_url: str) -> int | None:
    """History rows in the benchmark's SQLite file (None for other databases)."""
    if not database_url.startswith("sqlite:///"):
        return None
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
        return db.execute("SELECT COUNT(*) FROM didit_channels_statusevent").fetchone()[0]


def median_cpu(runs: list[harness.Run]) -> float:
    values = [run.cpu_ms for run in runs if run.cpu_ms is not None]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    per_round = max(50, round(600 * scale()))
    rounds = 3
    with tempfile.TemporaryDirectory(prefix="didit-bench-") as directory:
        env = harness.sqlite_env(directory)
        if os.environ.get("BENCH_DATABASE_URL"):
            env["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
        database = env["DATABASE_URL"].split("://", 1)[0]
        harness.migrate(SETTINGS, env)
        with harness.daphne_server(SETTINGS, env=env, ready_path=NOOP_PATH) as server:
            # Warm-up: imports, connections, the first SQLite pages.
            measure(server, NOOP_PATH, 100, "warm")
            measure(server, WEBHOOK_PATH, 100, "warm")

            noop_runs: list[harness.Run] = []
            webhook_runs: list[harness.Run] = []
            for round_number in range(rounds):
                order = [("noop", NOOP_PATH), ("webhook", WEBHOOK_PATH)]
                if round_number % 2:
                    order.reverse()
                for name, path in order:
                    run = measure(server, path, per_round, f"r{round_number}")
                    (noop_runs if name == "noop" else webhook_runs).append(run)
            time.sleep(0.5)  # let the last on_commit publishes finish
            applied = applied_count(env["DATABASE_URL"])

    noop_rate = statistics.median(run.rate for run in noop_runs)
    webhook_rate = statistics.median(run.rate for run in webhook_runs)
    ratio = webhook_rate / noop_rate if noop_rate else float("nan")
    webhook_statuses: dict[int, int] = {}
    for run in webhook_runs:
        for status, count in run.statuses.items():
            webhook_statuses[status] = webhook_statuses.get(status, 0) + count
    sent = per_round * rounds + 100
    noop_latency = harness.percentiles([x for run in noop_runs for x in run.latencies])
    webhook_latency = harness.percentiles([x for run in webhook_runs for x in run.latencies])

    harness.print_figures(
        f"webhook intake vs no-op view ({database}, 1 daphne process, {CONCURRENCY} connections)",
        {
            "no-op req/s": noop_rate,
            "webhook req/s": webhook_rate,
            "ratio (target >= 0.7)": ratio,
            "no-op p50 / p99 ms": f"{noop_latency['p50']:.2f} / {noop_latency['p99']:.2f}",
            "webhook p50 / p99 ms": f"{webhook_latency['p50']:.2f} / {webhook_latency['p99']:.2f}",
            "server CPU ms/request, no-op": median_cpu(noop_runs),
            "server CPU ms/request, webhook": median_cpu(webhook_runs),
            "webhook answers": webhook_statuses,
            "history rows / webhooks sent": f"{applied} / {sent}" if applied is not None else "n/a",
            "rounds x requests": f"{rounds} x {per_round} per endpoint",
        },
        note="median of alternating rounds; every webhook a new session, signed with V2 + raw",
    )
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"  ratio {ratio:.2f} {verdict} the target of {TARGET_RATIO}")
    if webhook_statuses != {200: per_round * rounds} or (applied is not None and applied != sent):
        raise SystemExit("webhook intake benchmark: some webhooks were not answered 200 or applied")


if __name__ == "__main__":
    main()
