"""An in-memory channel layer for one process, fit for a thousand sockets.

channels' ``InMemoryChannelLayer`` sweeps for expired messages and group
memberships on *every* ``receive`` and ``group_send``, walking every group
member each time. Every socket of this app is in its user's group, and admin
sockets also in the admin group, so one change fanned out to 1,000 admin
sockets cost a million membership checks: profiled (``bench/bench_fanout.py``
under py-spy), that sweep was 60% of the server's CPU.

``didit_channels.layers.InMemoryChannelLayer`` is that layer with the sweep
run at most once per ``sweep_interval`` seconds (default 1). Expiry stays what
it was meant to be, a bound on how long an unread message or a forgotten
membership lingers, give or take the interval. It is the demo's layer when
``REDIS_URL`` is not set::

    CHANNEL_LAYERS = {"default": {"BACKEND": "didit_channels.layers.InMemoryChannelLayer"}}

Like channels' own, it reaches only the sockets of its process: use
channels_redis for more than one (system check ``didit_channels.W001``).
"""

from __future__ import annotations

import time
from typing import Any

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    def __init__(self, *args: Any, sweep_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sweep_interval = float(sweep_interval)
        self._next_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval
        super()._clean_expired()
