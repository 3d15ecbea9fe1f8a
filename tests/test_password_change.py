"""A password change closes the user's sockets; only logins that survive it reopen them.

The change goes through the demo site's real ``PasswordChangeView``
(``POST /accounts/password_change/``, which keeps its own login with
``update_session_auth_hash``); tickets are requested with each login's session
cookie; the close travels over the real layer. Every socket test runs on the
in-memory layer and on real Redis.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from didit_channels.live.testing import disconnect_all, open_socket
from didit_channels.models import ConnectionTicket
from project.asgi import application
from tests.login_support import Browser, connect, open_from, stays_open, sync

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("any_layer", "fast_password_hashing"),
]

DEADLINE = 1.0
RECONNECT = {"type": "websocket.close", "code": 1001, "reason": "credentials changed"}


class ChangingBrowser(Browser):
    def change_password(self, old: str, new: str) -> None:
        response = self.client.post(
            "/accounts/password_change/",
            {"old_password": old, "new_password1": new, "new_password2": new},
        )
        assert response.status_code == 302, response.content


async def signed_in(username: str) -> ChangingBrowser:
    return await sync(ChangingBrowser, username=username, password=username)


NEW = "a-new-long-password-77"


async def test_changing_the_password_closes_every_socket_and_only_the_changer_reopens(alice, bob):
    mine = await signed_in("alice")
    thief = await signed_in("alice")
    bobs = await signed_in("bob")
    my_socket, thiefs_socket = await open_from(mine), await open_from(thief)
    token_client, _, _ = await open_socket(application, alice)
    bobs_socket = await open_from(bobs)

    await sync(mine.change_password, "alice", NEW)

    for socket in (my_socket, thiefs_socket, token_client):
        assert await socket.receive_output(DEADLINE) == RECONNECT
    await stays_open(bobs_socket)
    # Reconnecting: the login that changed the password gets a ticket, the other
    # login was flushed by Django and gets none.
    assert await sync(thief.ticket_status) in (401, 403)
    again = await open_from(mine)
    await disconnect_all([again, bobs_socket])


async def test_a_ticket_fetched_before_the_change_opens_nothing(alice):
    thief = await signed_in("alice")
    unused = await sync(thief.ticket)

    def change() -> None:
        user = get_user_model().objects.get(pk=alice.pk)
        user.set_password(NEW)
        user.save()

    await sync(change)

    socket = await connect(unused)
    assert await socket.receive_output(DEADLINE) == {"type": "websocket.close", "code": 4001}
    await socket.wait(1)


async def test_saves_that_leave_the_password_alone_close_nothing(alice):
    browser = await signed_in("alice")
    socket = await open_from(browser)

    def edit() -> None:
        user = get_user_model().objects.get(pk=alice.pk)
        user.first_name = "Alice"
        user.save()  # a full save, same hash
        user.save(update_fields=["last_login"])
        user.set_password(NEW)
        user.save(update_fields=["first_name"])  # the new hash is not written

    await sync(edit)

    await stays_open(socket)
    await disconnect_all([socket])


async def test_the_close_waits_for_the_commit_and_a_rollback_sends_none(alice):
    browser = await signed_in("alice")
    socket = await open_from(browser)

    def change_then_roll_back() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            user = get_user_model().objects.get(pk=alice.pk)
            user.set_unusable_password()
            user.save()
            raise RuntimeError("rolled back")

    await sync(change_then_roll_back)
    await stays_open(socket)
    assert await sync(browser.ticket_status) == 201  # the password is the old one still
    await disconnect_all([socket])


async def test_with_the_setting_off_a_change_leaves_sockets_and_tickets(alice, settings):
    settings.DIDIT_CHANNELS = {
        **settings.DIDIT_CHANNELS,
        "CLOSE_SOCKETS_ON_PASSWORD_CHANGE": False,
    }
    browser = await signed_in("alice")
    socket = await open_from(browser)
    await sync(browser.ticket)

    await sync(browser.change_password, "alice", NEW)

    await stays_open(socket)
    assert await sync(ConnectionTicket.objects.filter(user=alice).count) == 1
    await disconnect_all([socket])
