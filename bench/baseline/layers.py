"""A layer variant tried in the layer experiment (bench/bench_layers.py); not used by the demo."""

from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool


class BlockingPoolRedisChannelLayer(RedisChannelLayer):
    """RedisChannelLayer whose calls wait for a free pooled connection instead of failing.

    Host entries: ``{"address": url, "max_connections": n, "timeout": seconds}``.
    """

    def create_pool(self, index):
        host = dict(self.hosts[index])
        return BlockingConnectionPool.from_url(host.pop("address"), **host)
