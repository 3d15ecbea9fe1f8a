"""A handshake while the channel layer's Redis is unreachable: accepted, then closed 1011.

The layers are channels_redis' real ones, pointed at a port where nothing
listens. With the Pub/Sub layer (the demo's) the failure comes before the
consumer sees the handshake (``new_channel`` subscribes in Redis); with the
core layer, at ``group_add``. Either way the client gets the contract's
1011 ("retry with backoff"), not an HTTP 500, and no data. The daphne
version of this, with a real Redis stopped and started again, is in
``test_faults.py``.
"""

from __future__ import annotations

import logging

import pytest
from channels.layers import channel_layers

from didit_channels.live.testing import aissue_ticket, socket_communicator
from project.asgi import application
from tests.faults_support import free_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]

BACKENDS = [
    "channels_redis.pubsub.RedisPubSubChannelLayer",
    "channels_redis.core.RedisChannelLayer",
]


@pytest.fixture(params=BACKENDS, ids=["pubsub", "core"])
def unreachable_layer(request, settings):
    url = f"redis://:hunter2-layer-password@127.0.0.1:{free_port()}/0"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": request.param, "CONFIG": {"hosts": [url]}}}
    channel_layers.backends.clear()
    yield url
    channel_layers.backends.clear()


async def test_the_handshake_is_accepted_then_closed_1011_with_no_data(
    unreachable_layer, alice, caplog
):
    ticket = await aissue_ticket(alice)
    socket = socket_communicator(application, ticket, as_subprotocol=True)
    with caplog.at_level(logging.INFO, logger="didit_channels"):
        connected, subprotocol = await socket.connect(5)
        assert connected, "refused before accept: a browser would see a bare failure"
        assert subprotocol == "didit.v1"
        assert await socket.receive_output(5) == {"type": "websocket.close", "code": 1011}
        assert await socket.receive_nothing(0.2)
        await socket.wait(2)
    assert "hunter2-layer-password" not in caplog.text
    assert ticket not in caplog.text
    assert any(record.levelno >= logging.ERROR for record in caplog.records)
