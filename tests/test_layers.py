"""didit_channels.layers.InMemoryChannelLayer: channels' layer, swept once per interval."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.layers import InMemoryChannelLayer as ChannelsLayer

from didit_channels.layers import InMemoryChannelLayer


async def test_messages_and_groups_work_as_in_channels():
    layer = InMemoryChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", a)
    await layer.group_add("g", b)
    await layer.group_send("g", {"type": "m", "n": 1})
    assert await layer.receive(a) == {"type": "m", "n": 1}
    assert await layer.receive(b) == {"type": "m", "n": 1}
    await layer.group_discard("g", b)
    await layer.group_send("g", {"type": "m", "n": 2})
    assert (await layer.receive(a))["n"] == 2
    assert b not in layer.channels


async def test_a_fan_out_sweeps_once_per_interval_not_once_per_message(monkeypatch):
    sweeps = []
    original = ChannelsLayer._clean_expired
    monkeypatch.setattr(
        ChannelsLayer, "_clean_expired", lambda self: sweeps.append(1) or original(self)
    )
    layer = InMemoryChannelLayer(sweep_interval=60)
    channels = [await layer.new_channel() for _ in range(200)]
    for channel in channels:
        await layer.group_add("admins", channel)
    await layer.group_send("admins", {"type": "m"})
    for channel in channels:
        await layer.receive(channel)
    assert len(sweeps) == 1

    stock = ChannelsLayer()
    sweeps.clear()
    for channel in channels[:10]:
        await stock.group_add("admins", channel)
    await stock.group_send("admins", {"type": "m"})
    for channel in channels[:10]:
        await stock.receive(channel)
    assert len(sweeps) == 11  # what channels' own layer does: every call


async def test_expired_messages_and_memberships_still_go(monkeypatch):
    layer = InMemoryChannelLayer(expiry=0.05, group_expiry=1, sweep_interval=0.1)
    stale, fresh = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", stale)
    await layer.send(stale, {"type": "old"})
    await asyncio.sleep(0.2)  # past the message's expiry and the sweep interval
    await layer.send(fresh, {"type": "new"})
    assert await layer.receive(fresh) == {"type": "new"}  # this receive sweeps
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(stale), 0.2)
    # An expired message takes its channel out of its groups, as in channels.
    assert stale not in layer.groups.get("g", {})

    # Memberships older than group_expiry are dropped by the sweep too.
    member = await layer.new_channel()
    await layer.group_add("h", member)
    layer.groups["h"][member] = time.time() - 5
    await asyncio.sleep(0.15)
    await layer.group_send("h", {"type": "m"})
    assert member not in layer.groups.get("h", {})
