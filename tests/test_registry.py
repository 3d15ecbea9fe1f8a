"""The per-user socket count in Redis: claims, renewals, lapses (live/registry.py).

Real Redis throughout: the Lua claim script, the renewal's XX flag and the
key's TTL are Redis behaviour, and the cap across processes depends on them.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis
from channels.layers import get_channel_layer

from didit_channels.live import registry
from didit_channels.live.testing import open_socket
from project.asgi import application


def _registry() -> registry.RedisSocketRegistry:
    """The registry the consumer uses for this test's layer (``registry_for``)."""
    slots = registry.registry_for(get_channel_layer())
    assert isinstance(slots, registry.RedisSocketRegistry)
    return slots


@pytest.fixture
def inspect(redis_layer):
    client = redis.Redis.from_url(redis_layer)
    yield client
    client.close()


def test_renewals_are_spread_over_the_second_half_of_the_interval():
    delays = [registry.renew_delay() for _ in range(500)]
    assert all(registry.RENEW_SECONDS / 2 <= d <= registry.RENEW_SECONDS for d in delays)
    # Spread, not one value: sockets opened together stop renewing together.
    assert max(delays) - min(delays) > registry.RENEW_SECONDS / 4
    # And still well inside the claim: two renewals may be missed before it lapses.
    assert 2 * registry.RENEW_SECONDS < registry.CLAIM_SECONDS


class TestRedisRegistry:
    async def test_renew_pushes_the_claim_and_the_key_expiry_forward(self, inspect):
        slots, member = _registry(), f"chan-{uuid.uuid4().hex}"
        key = slots._key(7)
        assert await slots.claim(7, member, 2)
        inspect.zadd(key, {member: time.time() + 1})  # about to lapse
        inspect.expire(key, 1)
        await slots.renew(7, member)
        assert inspect.zscore(key, member) > time.time() + registry.CLAIM_SECONDS - 5
        assert inspect.ttl(key) > registry.CLAIM_SECONDS - 5

    async def test_renew_never_brings_back_a_released_claim(self, inspect):
        slots = _registry()
        key = slots._key(8)
        assert await slots.claim(8, "kept", 5)
        assert await slots.claim(8, "gone", 5)
        await slots.release(8, "gone")
        await slots.renew(8, "gone")
        assert inspect.zscore(key, "gone") is None
        assert inspect.zscore(key, "kept") is not None

    async def test_a_lapsed_claim_holds_no_slot(self, inspect):
        # A process that died without releasing: its claim's score is in the past.
        slots = _registry()
        key = slots._key(9)
        inspect.zadd(key, {"dead-process": time.time() - 1})
        assert await slots.claim(9, "live", 1)
        assert inspect.zscore(key, "dead-process") is None
        assert not await slots.claim(9, "one-too-many", 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_password_hashing")
async def test_an_open_socket_keeps_renewing_its_claim(alice, inspect, monkeypatch):
    monkeypatch.setattr(registry, "RENEW_SECONDS", 0.2)
    socket, _, _ = await open_socket(application, alice)
    key = _registry()._key(alice.pk)
    ((member, _score),) = inspect.zrange(key, 0, -1, withscores=True)
    for _ in range(2):  # renewed, and renewed again: the loop goes on
        inspect.zadd(key, {member: time.time() + 1})
        deadline = time.monotonic() + 3
        while inspect.zscore(key, member) < time.time() + 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert inspect.zscore(key, member) > time.time() + registry.CLAIM_SECONDS - 5
    await socket.disconnect()
    assert inspect.zcard(key) == 0
