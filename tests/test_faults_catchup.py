"""A change in the history whose push was lost reaches the open sockets anyway.

The layer loses pushes (Redis restarting under a Pub/Sub subscriber, a process
killed between commit and publish); with no later push to reveal the gap, the
process-wide watch (``live/catchup.py``) finds the change in the history and
sends it. On real servers, ``tests/test_faults.py`` restarts Redis under open
sockets; here the lost push is a history row written without publishing.
Every test runs on the in-memory layer and on real Redis.
"""

from __future__ import annotations

import pytest

from didit_channels.live.testing import disconnect_all, open_socket
from project.asgi import application
from tests.test_socket_stream import change, record_without_publishing

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("any_layer")]

LOOK_EVERY = 0.2
# A look, its grace period for pushes in flight, and a history read.
WITHIN = LOOK_EVERY + 1.0 + 1.5


@pytest.fixture(autouse=True)
def frequent_looks(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "CATCH_UP_SECONDS": LOOK_EVERY}


async def test_a_lost_last_push_reaches_the_owner_and_the_admin(alice, bob, superuser):
    await change("alice-1", "In Progress", user=alice)
    await change("bob-1", "In Progress", user=bob)
    owner, _, _ = await open_socket(application, alice)
    other, _, _ = await open_socket(application, bob)
    admin, _, _ = await open_socket(application, superuser)

    lost = await record_without_publishing("alice-1", "Approved")  # and nothing after it

    for socket in (owner, admin):
        frame = await socket.receive_json_from(WITHIN)
        assert (frame["type"], frame["id"], frame["status"]) == ("status", lost.pk, "Approved")
    assert await other.receive_nothing(WITHIN)  # bob's socket hears nothing of it
    await disconnect_all([owner, other, admin])


async def test_a_push_that_arrives_is_not_sent_again_by_the_watch(alice):
    socket, _, _ = await open_socket(application, alice)
    pushed = await change("alice-1", "Approved", user=alice)
    frame = await socket.receive_json_from(3)
    assert frame["id"] == pushed.pk
    assert await socket.receive_nothing(WITHIN)  # (under the core layer's 5 s read timeout)
    await socket.disconnect()


async def test_off_when_the_setting_is_zero(alice, settings):
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "CATCH_UP_SECONDS": 0}
    socket, _, _ = await open_socket(application, alice)
    await change("alice-1", "In Progress", user=alice)
    assert (await socket.receive_json_from(3))["type"] == "status"
    await record_without_publishing("alice-1", "Approved")
    assert await socket.receive_nothing(WITHIN)  # the caveat the watch exists for
    await socket.disconnect()
