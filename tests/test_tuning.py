"""``didit_channels.tuning.tune_gc``: the garbage-collector tuning a socket server calls."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from didit_channels.tuning import DEFAULT_GC_THRESHOLD, tune_gc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def collector():
    """Start unfrozen with Python's default threshold; put back what was there."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if frozen:
        gc.freeze()


@pytest.mark.usefixtures("collector")
class TestTuneGc:
    def test_raises_the_threshold_and_freezes_what_is_alive(self):
        kept = [object() for _ in range(10)]  # noqa: F841 - alive during the call
        tune_gc()
        assert gc.get_threshold() == DEFAULT_GC_THRESHOLD
        assert gc.get_freeze_count() > 1000  # at least this test process's modules

    def test_each_part_can_be_left_out(self):
        tune_gc(threshold=None)
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        tune_gc((10_000, 10, 10), freeze=False)
        assert gc.get_threshold() == (10_000, 10, 10)
        assert gc.get_freeze_count() == 0

    @pytest.mark.parametrize(
        "threshold", [(0, 10, 10), (700, 10), (700, -1, 10), (700.0, 10, 10), (True, 1, 1), "700"]
    )
    def test_a_threshold_that_would_stop_or_break_the_collector_is_refused(self, threshold):
        with pytest.raises(ValueError, match="three whole numbers"):
            tune_gc(threshold)
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0


def test_the_demo_asgi_module_tunes_its_process():
    # A fresh interpreter: what daphne gets when it imports project.asgi.
    probe = (
        "import gc, json, project.asgi; "
        "print(json.dumps([gc.get_threshold(), gc.get_freeze_count()]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    threshold, frozen = json.loads(out.stdout.strip().splitlines()[-1])
    assert tuple(threshold) == DEFAULT_GC_THRESHOLD
    assert frozen > 10_000  # Django and the site, imported before the call
