"""What a socket hears: hello, snapshot, then every change it may see and nothing else.

Changes are driven through ``state.apply_status_change``, the one path every
source (webhook, reconcile, API) goes through. Every test runs on the
in-memory layer and on real Redis.
"""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from didit_channels import state
from didit_channels.live.groups import user_group
from didit_channels.live.testing import disconnect_all, open_socket
from didit_channels.models import StatusEvent, VerificationSession
from project.asgi import application
from tests.conftest import apply_now

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("any_layer", "fast_password_hashing"),
]


QUIET = 0.2  # how long "hears nothing" listens


change = database_sync_to_async(apply_now)


@database_sync_to_async
def record_without_publishing(session_id: str, status: str) -> StatusEvent:
    """A change whose push the layer lost: in history, never published."""
    with transaction.atomic():
        session = VerificationSession.objects.select_for_update().get(session_id=session_id)
        previous, session.status = session.status, status
        session.save()
        event, _ = state.record_event(
            session,
            status=status,
            previous_status=previous,
            webhook_type="status.updated",
            occurred_at=timezone.now(),
            dedupe_key=f"lost:{uuid.uuid4()}",
            source="test",
        )
    return event


@database_sync_to_async
def make_desk_admin(user) -> None:
    group, _ = Group.objects.get_or_create(name="Verification admins")
    group.permissions.add(
        Permission.objects.get(
            codename="view_all_sessions", content_type__app_label="didit_channels"
        )
    )
    user.groups.add(group)


async def next_status(socket) -> dict:
    frame = await socket.receive_json_from(3)
    assert frame["type"] == "status", frame
    return frame


class TestGreeting:
    async def test_snapshot_lists_the_users_own_sessions(self, alice, bob):
        await change("alice-1", "In Progress", user=alice)
        await change("alice-2", "Approved", user=alice)
        last = await change("bob-1", "Declined", user=bob)
        socket, hello, snapshot = await open_socket(application, alice)
        assert hello["cursor"] == last.pk
        assert [(s["session_id"], s["status"]) for s in snapshot["sessions"]] == [
            ("alice-2", "Approved"),
            ("alice-1", "In Progress"),
        ]
        # The stored times, aware and in ISO 8601 as the API gives them.
        stored = await database_sync_to_async(
            lambda: [
                session.updated_at.isoformat()
                for session in VerificationSession.objects.filter(user=alice).order_by(
                    "-updated_at"
                )
            ]
        )()
        assert [entry["updated_at"] for entry in snapshot["sessions"]] == stored
        assert all(entry["updated_at"].endswith("+00:00") for entry in snapshot["sessions"])
        await socket.disconnect()

    async def test_admin_snapshot_is_the_most_recent_sessions_bounded(self, superuser, settings):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "ADMIN_SNAPSHOT_LIMIT": 3}
        for index in range(5):
            await change(f"s-{index}", "In Progress")
        socket, _, snapshot = await open_socket(application, superuser)
        assert [s["session_id"] for s in snapshot["sessions"]] == ["s-4", "s-3", "s-2"]
        await socket.disconnect()


class TestAudiences:
    async def test_owner_hears_their_session_change(self, alice):
        socket, _, _ = await open_socket(application, alice)
        event = await change("alice-1", "Approved", user=alice)
        assert await next_status(socket) == {
            "type": "status",
            "id": event.pk,
            "session_id": "alice-1",
            "status": "Approved",
            "previous_status": None,
            "webhook_type": "status.updated",
            "occurred_at": event.occurred_at.isoformat(),
            "user": alice.pk,
        }
        await socket.disconnect()

    async def test_another_users_socket_hears_nothing(self, alice, bob):
        bobs, _, _ = await open_socket(application, bob)
        alices, _, _ = await open_socket(application, alice)
        await change("alice-1", "Approved", user=alice)
        await change("unassigned", "Approved")
        await next_status(alices)
        assert await bobs.receive_nothing(QUIET)
        assert await alices.receive_nothing(QUIET)  # not the unassigned one either
        await disconnect_all([alices, bobs])

    async def test_admin_audience_hears_every_session(self, alice, verification_admin_user):
        desk, hello, _ = await open_socket(application, verification_admin_user)
        assert hello["audiences"] == ["user", "admin"]
        owned = await change("alice-1", "Approved", user=alice)
        unassigned = await change("nobody-1", "In Review")
        assert [(await next_status(desk))["id"] for _ in range(2)] == [owned.pk, unassigned.pk]
        await desk.disconnect()

    async def test_admin_owning_a_session_hears_it_once(self, superuser):
        # Published to the user group and the admin group; the cursor drops the copy.
        socket, _, _ = await open_socket(application, superuser)
        first = await change("mine", "In Progress", user=superuser)
        second = await change("mine", "Approved")
        assert (await next_status(socket))["id"] == first.pk
        assert (await next_status(socket))["id"] == second.pk
        assert await socket.receive_nothing(QUIET)
        await socket.disconnect()

    async def test_a_misrouted_frame_is_never_forwarded(self, alice, bob):
        socket, hello, _ = await open_socket(application, alice)
        bobs = {"type": "status", "id": hello["cursor"] + 100, "session_id": "b", "user": bob.pk}
        await get_channel_layer().group_send(
            user_group(alice.pk), {"type": "didit.status", "frame": bobs, "prev": None}
        )
        assert await socket.receive_nothing(QUIET)
        await socket.disconnect()

    async def test_frames_carry_no_decision_data(self, alice):
        socket, _, _ = await open_socket(application, alice)
        await change(
            "alice-1",
            "Approved",
            user=alice,
            decision={"id_verification": {"first_name": "Alice", "document_number": "X123"}},
        )
        frame = await next_status(socket)
        assert "Alice" not in str(frame) and "X123" not in str(frame)
        await socket.disconnect()

    async def test_reassigned_session_follows_its_new_owner(self, alice, bob):
        await change("shared", "In Progress", user=alice)
        await database_sync_to_async(VerificationSession.objects.update)(user=bob)
        alices, _, _ = await open_socket(application, alice)
        bobs, _, bob_snapshot = await open_socket(application, bob)
        assert [s["session_id"] for s in bob_snapshot["sessions"]] == ["shared"]
        await change("shared", "Approved")
        assert (await next_status(bobs))["user"] == bob.pk
        assert await alices.receive_nothing(QUIET)
        # Alice keeps the history from when it was hers.
        await alices.send_json_to({"type": "resume", "after": 0})
        replay = await next_status(alices)
        assert (replay["session_id"], replay["status"]) == ("shared", "In Progress")
        assert (await alices.receive_json_from())["type"] == "resumed"
        await disconnect_all([alices, bobs])


class TestGapFreeLiveDelivery:
    async def test_a_lost_push_is_recovered_with_the_next_one(self, alice):
        await change("alice-1", "In Progress", user=alice)
        socket, _, _ = await open_socket(application, alice)
        lost = await record_without_publishing("alice-1", "In Review")
        pushed = await change("alice-1", "Approved", user=alice)
        assert [(await next_status(socket))["id"] for _ in range(2)] == [lost.pk, pushed.pk]
        assert await socket.receive_nothing(QUIET)
        await socket.disconnect()

    async def test_other_users_events_in_between_are_not_sent(self, alice, bob):
        socket, _, _ = await open_socket(application, alice)
        await change("bob-1", "In Progress", user=bob)
        await record_without_publishing("bob-1", "Approved")
        mine = await change("alice-1", "Approved", user=alice)
        assert (await next_status(socket))["id"] == mine.pk
        assert await socket.receive_nothing(QUIET)
        await socket.disconnect()

    async def test_an_admins_own_change_does_not_skip_a_lost_event_of_another_user(
        self, verification_admin_user, bob
    ):
        # The admin's socket is in its own user group and the admin group; the
        # user copy of its own change carries only the admin's own previous
        # event, so it must be the admin copy (previous event of all) that counts.
        await change("bob-1", "In Progress", user=bob)
        socket, _, _ = await open_socket(application, verification_admin_user)
        lost = await record_without_publishing("bob-1", "Approved")
        own = await change("desk-1", "Approved", user=verification_admin_user)
        assert [(await next_status(socket))["id"] for _ in range(2)] == [lost.pk, own.pk]
        assert await socket.receive_nothing(QUIET)
        await socket.disconnect()

    async def test_ids_reach_a_socket_in_strictly_increasing_order(self, alice):
        socket, _, _ = await open_socket(application, alice)
        events = []
        for index in range(6):
            events.append(await change(f"s-{index % 2}", f"step {index}", user=alice))
            if index == 3:
                events.append(await record_without_publishing("s-0", "lost"))
        received = [(await next_status(socket))["id"] for _ in events]
        assert received == sorted(e.pk for e in events)
        await socket.disconnect()

    async def test_change_after_the_snapshot_is_not_lost(self, alice):
        # The snapshot time is the cursor: a change right after it is pushed.
        await change("alice-1", "In Progress", user=alice)
        socket, hello, snapshot = await open_socket(application, alice)
        later = await change("alice-1", "Approved", user=alice)
        assert snapshot["sessions"][0]["status"] == "In Progress"
        frame = await next_status(socket)
        assert frame["id"] == later.pk > hello["cursor"]
        await socket.disconnect()


@pytest.fixture
async def verification_admin_user(django_user_model):
    """A plain user holding view_all_sessions through the "Verification admins" group."""
    user = await database_sync_to_async(django_user_model.objects.create_user)(
        "desk", password=None
    )
    await make_desk_admin(user)
    return user
