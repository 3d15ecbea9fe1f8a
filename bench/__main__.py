"""``make bench`` / ``python -m bench [NAME ...]``: run every benchmark and print its figures.

A benchmark is a module directly in ``bench/`` that can run as a script (it
has an ``if __name__ == "__main__":`` block); ``harness``, ``loadgen`` and
other helpers have none and are skipped. Each runs in its own interpreter
(``python -m bench.<name>``), so each may configure Django its own way, and
prints its own figures. Names on the command line pick some (``python -m
bench webhook_intake``). ``BENCH_SCALE=0.2`` asks every benchmark for a
quicker, smaller run.

Exits non-zero if a benchmark failed; the others still run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNNABLE = re.compile(r"^if __name__ == [\"']__main__[\"']:", re.MULTILINE)


def benchmarks() -> list[str]:
    names = []
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        if RUNNABLE.search(path.read_text(encoding="utf-8")):
            names.append(path.stem)
    return names


def main(argv: list[str]) -> int:
    available = benchmarks()
    chosen = argv or available
    unknown = [name for name in chosen if name not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    failed = []
    for name in chosen:
        print(f"\n##### bench.{name}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent)
        took = time.monotonic() - started
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"##### bench.{name}: {status} in {took:.0f} s", flush=True)
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
