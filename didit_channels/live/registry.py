"""Counting a user's open sockets, for the per-user cap (``MAX_SOCKETS_PER_USER``).

On a channels_redis layer (core or Pub/Sub) the count lives in Redis, so the cap holds across every
server process: one sorted set per user, member = the socket's channel name,
score = when the claim lapses. A live socket renews its claim every 10-20 s
(``renew_delay``); a process that dies without cleaning up leaves claims that
lapse after ``CLAIM_SECONDS``, so the user is not locked out for long. The
check-and-add is one Lua script, so two handshakes racing for the last slot
cannot both win. No database write is involved.

On any other layer (the in-memory one) sockets are counted in this process,
per layer instance: that layer reaches only this process's sockets anyway.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
import zlib
from typing import Any, Protocol

from channels import DEFAULT_CHANNEL_LAYER
from django.conf import settings

from ..conf import didit_settings

CLAIM_SECONDS = 60
RENEW_SECONDS = 20
# The registry's own Redis pool per process and host.
POOL_SIZE = 32
POOL_TIMEOUT_SECONDS = 5

# KEYS[1] the user's set; ARGV: now, claim expiry, member, limit, key ttl.
_CLAIM_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    return 0
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def renew_delay() -> float:
    """Seconds until a socket's next renewal: ``RENEW_SECONDS`` less up to half, at random.

    Sockets opened together (a burst, every client reconnecting after a
    deploy) would otherwise renew together for as long as they stay open:
    1,000 of them, 1,000 Redis calls at the same instant every 20 s, queued
    ahead of whatever the process had to push then. Drawn afresh each time,
    the renewals spread out; a claim (``CLAIM_SECONDS``) still outlives two
    missed renewals.
    """
    return RENEW_SECONDS * random.uniform(0.5, 1.0)


class SocketRegistry(Protocol):
    async def claim(self, user_pk: Any, channel_name: str, limit: int) -> bool: ...

    async def renew(self, user_pk: Any, channel_name: str) -> None: ...

    async def release(self, user_pk: Any, channel_name: str) -> None: ...


class LocalSocketRegistry:
    """Sockets of this process, for layers that reach only this process."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[str]] = {}

    async def claim(self, user_pk: Any, channel_name: str, limit: int) -> bool:
        sockets = self._sockets.setdefault(str(user_pk), set())
        if channel_name not in sockets and len(sockets) >= limit:
            return False
        sockets.add(channel_name)
        return True

    async def renew(self, user_pk: Any, channel_name: str) -> None:
        return None

    async def release(self, user_pk: Any, channel_name: str) -> None:
        sockets = self._sockets.get(str(user_pk))
        if sockets is not None:
            sockets.discard(channel_name)
            if not sockets:
                del self._sockets[str(user_pk)]


class RedisSocketRegistry:
    """Sockets of every process sharing a channels_redis layer, kept in that layer's Redis.

    It uses a small pool of its own, which waits for a free connection
    rather than failing: a burst of handshakes queues here instead of
    erroring (redis-py's default asyncio pool raises once 100 calls are in
    flight). Sentinel configurations use channels_redis' own pool.
    """

    def __init__(self, hosts: list[dict[str, Any]], prefix: str) -> None:
        self._hosts = hosts
        self._prefix = prefix
        # One client per event loop and host: redis-py's asyncio clients are loop-bound.
        self._clients: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()

    def _key(self, user_pk: Any) -> str:
        return f"{self._prefix}:{didit_settings.GROUP_PREFIX}:sockets:{user_pk}"

    def _redis(self, key: str):
        index = zlib.crc32(key.encode("utf-8")) % len(self._hosts)
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        if index not in clients:
            from redis import asyncio as aioredis

            clients[index] = aioredis.Redis(connection_pool=_pool(self._hosts[index]))
        return clients[index]

    async def claim(self, user_pk: Any, channel_name: str, limit: int) -> bool:
        key = self._key(user_pk)
        now = time.time()
        claimed = await self._redis(key).eval(
            _CLAIM_SCRIPT, 1, key, now, now + CLAIM_SECONDS, channel_name, limit, CLAIM_SECONDS
        )
        return bool(claimed)

    async def renew(self, user_pk: Any, channel_name: str) -> None:
        key = self._key(user_pk)
        # One round trip. XX: never resurrect a claim that was released or has lapsed.
        async with self._redis(key).pipeline(transaction=False) as pipe:
            pipe.zadd(key, {channel_name: time.time() + CLAIM_SECONDS}, xx=True)
            pipe.expire(key, CLAIM_SECONDS)
            await pipe.execute()

    async def release(self, user_pk: Any, channel_name: str) -> None:
        key = self._key(user_pk)
        await self._redis(key).zrem(key, channel_name)


def _pool(host: dict[str, Any]):
    from channels_redis.utils import create_pool
    from redis import asyncio as aioredis

    host = dict(host)
    if "master_name" in host:
        return create_pool(host)
    options = {"max_connections": POOL_SIZE, "timeout": POOL_TIMEOUT_SECONDS}
    if "address" in host:
        address = host.pop("address")
        return aioredis.BlockingConnectionPool.from_url(address, **options, **host)
    return aioredis.BlockingConnectionPool(**options, **host)


_registries: weakref.WeakKeyDictionary[Any, SocketRegistry] = weakref.WeakKeyDictionary()


def registry_for(layer: Any, alias: str = DEFAULT_CHANNEL_LAYER) -> SocketRegistry:
    """The registry that counts sockets for ``layer`` (one per layer instance).

    Redis-backed when the layer's ``CHANNEL_LAYERS`` entry is a channels_redis
    backend (the core or the Pub/Sub layer): the same hosts and prefix.
    """
    registry = _registries.get(layer)
    if registry is None:
        config = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get(alias, {})
        options = config.get("CONFIG", {}) or {}
        if str(config.get("BACKEND", "")).startswith("channels_redis."):
            from channels_redis.utils import decode_hosts

            registry = RedisSocketRegistry(
                decode_hosts(options.get("hosts")), str(options.get("prefix", "asgi"))
            )
        else:
            registry = LocalSocketRegistry()
        _registries[layer] = registry
    return registry
