#!/usr/bin/env python3
"""Profile the app's hot paths with py-spy while a load runs; print where the CPU goes.

    REDIS_URL=redis://127.0.0.1:6379/0 python scripts/profile_hotpaths.py [webhook|handshake]

Starts the benchmark stack (bench/bench_support.py: the demo site on a fresh
database, one daphne process), attaches ``py-spy record`` to the server and
drives, for ``--seconds`` each:

* ``webhook``: 4 senders in a closed loop, each a signed webhook for a new
  session of its user, until the user's socket has the status frame;
* ``handshake``: 10 clients in a closed loop, ticket (``POST
  /didit/api/tickets/``) + connect + hello + close;
* ``connect``: the same loop with tickets issued beforehand (the socket's
  share of a handshake alone).

For each it prints the functions with the most samples on top of the stack
(self) and, among frames of Django, DRF, Channels, daphne and the app, the most
samples anywhere in the stack (inclusive). Raw collapsed stacks are kept in
``--out`` (default a temporary directory) for flame graphs.

Needs py-spy (test extra) and permission to ptrace the server (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_support, harness, loadgen  # noqa: E402

INTERESTING = ("didit_channels", "django", "rest_framework", "channels", "daphne", "asgiref")


async def drive_webhooks(s: bench_support.Stack, users, tokens, seconds: float) -> int:
    from didit_channels.testing import signed_webhook, status_payload

    client = loadgen.HttpClient(s.app.port)
    inboxes = []
    for token in tokens:
        ws, _ = await loadgen.open_socket(await s.ticket_url(client, token), origin=s.origin)
        inboxes.append(loadgen.Inbox(ws))
    client.close()
    deadline = time.monotonic() + seconds
    sent = 0

    async def sender(index: int) -> None:
        nonlocal sent
        http = loadgen.HttpClient(s.app.port)
        while time.monotonic() < deadline:
            session_id = f"prof-{uuid.uuid4().hex[:16]}"
            payload = status_payload(
                session_id, "Approved", vendor_data=str(users[index].pk), event_id=session_id
            )
            body, headers = signed_webhook(payload, harness.BENCH_WEBHOOK_SECRET)
            headers["Content-Type"] = "application/json"
            arrived = inboxes[index].expect(lambda f, sid=session_id: f.get("session_id") == sid)
            await http.request("POST", "/didit/webhook/", body=body, headers=headers)
            await asyncio.wait_for(arrived, 10)
            sent += 1
        http.close()

    await asyncio.gather(*(sender(i) for i in range(len(tokens))))
    for inbox in inboxes:
        await inbox.stop()
    await loadgen.close_all([inbox.ws for inbox in inboxes])
    return sent


async def drive_handshakes(
    s: bench_support.Stack, tokens, seconds: float, tickets: list[str] | None = None
) -> int:
    deadline = time.monotonic() + seconds
    opened = 0
    issued = iter(tickets or ())

    async def client(index: int) -> None:
        nonlocal opened
        http = loadgen.HttpClient(s.app.port)
        n = index
        while time.monotonic() < deadline:
            if tickets is None:
                url = await s.ticket_url(http, tokens[n % len(tokens)])
            else:
                ticket = next(issued, None)
                if ticket is None:
                    break
                url = s.socket_url(ticket)
            n += 10
            ws, _ = await loadgen.open_socket(url, origin=s.origin)
            await ws.close()
            opened += 1
        http.close()

    await asyncio.gather(*(client(i) for i in range(10)))
    return opened


def summarise(raw: Path, top: int) -> None:
    self_counts: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        self_counts[frames[-1]] += samples
        for frame in set(frames):
            if any(part in frame for part in INTERESTING):
                inclusive[frame] += samples
    print(f"  {total} samples")
    print("  -- self (top of stack)")
    for frame, samples in self_counts.most_common(top):
        print(f"  {100 * samples / total:5.1f}%  {frame}")
    print("  -- inclusive (Django, DRF, Channels, daphne, asgiref, the app)")
    for frame, samples in inclusive.most_common(top):
        print(f"  {100 * samples / total:5.1f}%  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=["webhook", "handshake"])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = args.out or Path(tempfile.mkdtemp(prefix="didit-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    with bench_support.stack() as s:
        users = s.make_users(300, prefix="prof")
        tokens = [s.jwt(user) for user in users]
        for path in args.paths:
            raw = out / f"{path}.txt"
            # "connect": enough tickets for the whole run, issued before it (not profiled).
            issued = s.issue_tickets(users * 20) if path == "connect" else None
            recorder = subprocess.Popen(  # noqa: S603
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(s.app.process.pid),
                    "--rate",
                    "250",
                    "--duration",
                    str(int(args.seconds)),
                    "--format",
                    "raw",
                    # Only the thread holding the GIL: CPU spent in Python, not
                    # thread-pool workers waiting for work.
                    "--gil",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
            if path == "webhook":
                done = asyncio.run(drive_webhooks(s, users[:4], tokens[:4], args.seconds - 1))
            elif path == "connect":
                done = asyncio.run(drive_handshakes(s, tokens, args.seconds - 1, issued))
            else:
                done = asyncio.run(drive_handshakes(s, tokens, args.seconds - 1))
            recorder.wait(60)
            print(f"\n== {path}: {done} done in {args.seconds:.0f} s; stacks in {raw}")
            summarise(raw, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
