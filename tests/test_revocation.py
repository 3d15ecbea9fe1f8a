"""Losing access closes the user's sockets with 4003 within one second, and only then.

The change is made the way a site would make it (the ORM, in a thread, with
autocommit), so the receivers fire and the check goes over the real layer.
Every test runs on the in-memory layer and on real Redis.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group, Permission

from didit_channels.live.testing import disconnect_all, open_socket
from project.asgi import application

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("any_layer", "fast_password_hashing"),
]

# The contract's deadline, used as the receive timeout.
DEADLINE = 1.0


def view_all() -> Permission:
    return Permission.objects.get(
        codename="view_all_sessions", content_type__app_label="didit_channels"
    )


def desk_group() -> Group:
    group, _ = Group.objects.get_or_create(name="Verification admins")
    group.permissions.add(view_all())
    return group


async def in_thread(function) -> None:
    await database_sync_to_async(function)()


async def expect_4003(socket) -> None:
    message = await socket.receive_output(DEADLINE)
    assert message == {"type": "websocket.close", "code": 4003}


async def stays_open(socket) -> None:
    assert await socket.receive_nothing(0.3)
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}


class TestUserAudience:
    async def test_deactivating_closes_every_socket_of_the_user(self, alice, bob):
        first, _, _ = await open_socket(application, alice)
        second, _, _ = await open_socket(application, alice)
        other, _, _ = await open_socket(application, bob)

        def deactivate():
            alice.is_active = False
            alice.save()

        await in_thread(deactivate)
        await expect_4003(first)
        await expect_4003(second)
        await stays_open(other)
        await disconnect_all([first, second, other])

    async def test_deleting_the_user_closes_their_sockets(self, alice):
        socket, _, _ = await open_socket(application, alice)
        await in_thread(alice.delete)
        await expect_4003(socket)
        await socket.disconnect()

    async def test_saving_other_fields_leaves_the_socket_open(self, alice):
        socket, _, _ = await open_socket(application, alice)

        def rename():
            alice.first_name = "Alice"
            alice.save()
            alice.save(update_fields=["last_login"])

        await in_thread(rename)
        await stays_open(socket)
        await socket.disconnect()

    async def test_a_plain_user_losing_a_group_keeps_the_user_audience(self, alice):
        def join():
            alice.groups.add(Group.objects.create(name="Staff"))

        await in_thread(join)
        socket, hello, _ = await open_socket(application, alice)
        assert hello["audiences"] == ["user"]
        await in_thread(lambda: alice.groups.clear())
        await stays_open(socket)
        await socket.disconnect()


class TestAdminAudience:
    async def test_superuser_losing_the_flag_is_closed(self, superuser):
        socket, hello, _ = await open_socket(application, superuser)
        assert hello["audiences"] == ["user", "admin"]

        def demote():
            superuser.is_superuser = False
            superuser.save(update_fields=["is_superuser"])

        await in_thread(demote)
        await expect_4003(socket)
        await socket.disconnect()

    @pytest.mark.parametrize(
        "take_away",
        [
            lambda user: user.user_permissions.remove(view_all()),
            lambda user: user.user_permissions.clear(),
            lambda user: view_all().user_set.remove(user),
            lambda user: view_all().user_set.clear(),
        ],
        ids=["remove", "clear", "reverse-remove", "reverse-clear"],
    )
    async def test_direct_permission_taken_away_closes(self, alice, take_away):
        await in_thread(lambda: alice.user_permissions.add(view_all()))
        socket, hello, _ = await open_socket(application, alice)
        assert hello["audiences"] == ["user", "admin"]
        await in_thread(lambda: take_away(alice))
        await expect_4003(socket)
        await socket.disconnect()

    @pytest.mark.parametrize(
        "take_away",
        [
            lambda user, group: user.groups.remove(group),
            lambda user, group: group.user_set.clear(),
            lambda user, group: group.permissions.remove(view_all()),
            lambda user, group: view_all().group_set.remove(group),
            lambda user, group: group.permissions.clear(),
            lambda user, group: group.delete(),
        ],
        ids=[
            "leave-group",
            "group-emptied",
            "permission-off-group",
            "group-off-permission",
            "group-permissions-cleared",
            "group-deleted",
        ],
    )
    async def test_group_permission_taken_away_closes(self, alice, take_away):
        group = await database_sync_to_async(desk_group)()
        await in_thread(lambda: alice.groups.add(group))
        socket, hello, _ = await open_socket(application, alice)
        assert hello["audiences"] == ["user", "admin"]
        await in_thread(lambda: take_away(alice, group))
        await expect_4003(socket)
        await socket.disconnect()

    async def test_admin_who_keeps_the_permission_another_way_stays(self, alice):
        group = await database_sync_to_async(desk_group)()

        def grant_twice():
            alice.groups.add(group)
            alice.user_permissions.add(view_all())

        await in_thread(grant_twice)
        socket, _, _ = await open_socket(application, alice)
        await in_thread(lambda: alice.groups.remove(group))
        await stays_open(socket)
        await socket.disconnect()

    async def test_unrelated_group_permission_change_leaves_admins_alone(self, superuser):
        group = await database_sync_to_async(desk_group)()
        socket, _, _ = await open_socket(application, superuser)

        def unrelated():
            group.permissions.remove(
                Permission.objects.get(
                    codename="view_decision", content_type__app_label="didit_channels"
                )
            )

        await in_thread(unrelated)
        await stays_open(socket)
        await socket.disconnect()
