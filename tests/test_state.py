"""state.apply_status_change: applied, duplicate, stale, signal, publish only after commit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from didit_channels.live.groups import admin_group, user_group
from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.models.deliveries import DeliveryOutcome
from didit_channels.signals import session_status_changed
from didit_channels.state import ApplyResult, StatusChange, apply_status_change

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def change(session_id="s-1", status="Approved", *, at=T0, key=None, **extra) -> StatusChange:
    return StatusChange(
        session_id=session_id,
        status=status,
        occurred_at=at,
        dedupe_key=key or f"test:{session_id}:{status}:{at.isoformat()}",
        **extra,
    )


@pytest.fixture
def signals_sent():
    sent = []

    def receiver(sender, **kwargs):
        sent.append(kwargs)

    session_status_changed.connect(receiver)
    yield sent
    session_status_changed.disconnect(receiver)


@pytest.mark.django_db
class TestApply:
    def test_applied_creates_session_and_history(self, signals_sent, alice):
        applied = apply_status_change(change(payload={"vendor_data": str(alice.pk)}))

        assert applied.result is ApplyResult.APPLIED
        session = VerificationSession.objects.get()
        assert (session.status, session.user, session.last_event_at) == ("Approved", alice, T0)
        [event] = StatusEvent.objects.all()
        assert applied.event == event
        assert (event.previous_status, event.user, event.source) == (None, alice, "webhook")
        [sent] = signals_sent
        assert sent["session"] == session and sent["event"] == event
        assert sent["previous_status"] is None and sent["source"] == "webhook"

    def test_second_change_records_the_previous_status(self, signals_sent):
        apply_status_change(change(status="In Progress"))
        apply_status_change(change(status="Approved", at=T0 + timedelta(seconds=5)))
        assert [s["previous_status"] for s in signals_sent] == [None, "In Progress"]
        assert VerificationSession.objects.get().status == "Approved"

    def test_duplicate_changes_nothing_and_sends_nothing(self, signals_sent):
        apply_status_change(change(key="k1"))
        again = apply_status_change(change(key="k1"))
        assert again.result is ApplyResult.DUPLICATE and again.event is None
        assert StatusEvent.objects.count() == 1
        assert len(signals_sent) == 1

    def test_stale_is_dropped_without_rolling_back(self, signals_sent):
        apply_status_change(change(status="Approved"))
        late = apply_status_change(change(status="In Progress", at=T0 - timedelta(seconds=1)))
        assert late.result is ApplyResult.STALE
        assert VerificationSession.objects.get().status == "Approved"
        assert StatusEvent.objects.count() == 1
        assert len(signals_sent) == 1

    def test_same_timestamp_different_status_applies(self):
        apply_status_change(change(status="In Review"))
        assert apply_status_change(change(status="Approved")).result is ApplyResult.APPLIED

    def test_delivery_gets_outcome_and_dedupe_key_in_the_same_transaction(self):
        delivery = WebhookDelivery.objects.create(raw_body=b"{}")
        delivery.signature_valid, delivery.event_id = True, "ev-9"
        apply_status_change(change(key="event:ev-9"), delivery=delivery)
        delivery.refresh_from_db()
        assert delivery.outcome == DeliveryOutcome.ACCEPTED
        assert (delivery.dedupe_key, delivery.session_id, delivery.event_id) == (
            "event:ev-9",
            "s-1",
            "ev-9",
        )
        assert delivery.signature_valid is True and delivery.processed_at is not None

    def test_a_second_copy_of_a_stale_delivery_is_a_duplicate(self):
        apply_status_change(change(status="Approved"))
        late = change(status="In Progress", at=T0 - timedelta(seconds=1), key="late")
        first = WebhookDelivery.objects.create()
        second = WebhookDelivery.objects.create()
        assert apply_status_change(late, delivery=first).result is ApplyResult.STALE
        assert apply_status_change(late, delivery=second).result is ApplyResult.DUPLICATE
        second.refresh_from_db()
        assert second.outcome == DeliveryOutcome.DUPLICATE

    def test_explicit_user_wins_over_vendor_data(self, alice, bob):
        apply_status_change(change(user=bob, payload={"vendor_data": str(alice.pk)}))
        assert VerificationSession.objects.get().user == bob

    def test_owner_is_not_reassigned_by_later_vendor_data(self, alice, bob):
        apply_status_change(change(payload={"vendor_data": str(alice.pk)}))
        later = change(
            status="Declined", at=T0 + timedelta(1), payload={"vendor_data": str(bob.pk)}
        )
        apply_status_change(later)
        assert VerificationSession.objects.get().user == alice


# --- publish after commit -------------------------------------------------------


async def subscribe(*groups: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return channel


async def next_message(channel: str, timeout: float = 2.0):
    return await asyncio.wait_for(get_channel_layer().receive(channel), timeout)


async def nothing_on(channel: str) -> bool:
    try:
        await next_message(channel, timeout=0.3)
    except TimeoutError:
        return True
    return False


@pytest.mark.django_db(transaction=True)
class TestPublish:
    async def test_published_to_owner_and_admin_groups_after_commit(self, any_layer, alice):
        owner = await subscribe(user_group(alice.pk))
        admins = await subscribe(admin_group())

        applied = await database_sync_to_async(apply_status_change)(
            change(payload={"vendor_data": str(alice.pk)})
        )

        for channel in (owner, admins):
            message = await next_message(channel)
            assert message["type"] == "didit.status"
            assert message["frame"]["id"] == applied.event.pk
            assert message["frame"]["status"] == "Approved"
            assert message["frame"]["user"] == alice.pk
            assert message["prev"] is None

    async def test_unassigned_session_goes_to_admins_only(self, memory_layer, alice):
        owner = await subscribe(user_group(alice.pk))
        admins = await subscribe(admin_group())
        await database_sync_to_async(apply_status_change)(change(payload={"vendor_data": "nobody"}))
        assert (await next_message(admins))["frame"]["user"] is None
        assert await nothing_on(owner)

    async def test_prev_links_to_the_previous_history_row(self, memory_layer):
        admins = await subscribe(admin_group())
        first = await database_sync_to_async(apply_status_change)(change("a"))
        await database_sync_to_async(apply_status_change)(change("b"))
        await next_message(admins)
        assert (await next_message(admins))["prev"] == first.event.pk

    async def test_each_audience_hears_of_the_previous_event_it_may_see(
        self, memory_layer, alice, bob
    ):
        owner = await subscribe(user_group(alice.pk))
        admins = await subscribe(admin_group())
        apply = database_sync_to_async(apply_status_change)
        first = await apply(change("a", payload={"vendor_data": str(alice.pk)}))
        others = await apply(change("b", payload={"vendor_data": str(bob.pk)}))
        later = T0 + timedelta(seconds=1)
        await apply(change("a", "Declined", at=later, payload={"vendor_data": str(alice.pk)}))
        owner_copies = [await next_message(owner) for _ in range(2)]
        admin_copies = [await next_message(admins) for _ in range(3)]
        # Alice's socket: her own previous event, not bob's in between.
        assert [(m["prev"], m["audience"]) for m in owner_copies] == [
            (None, "user"),
            (first.event.pk, "user"),
        ]
        assert [(m["prev"], m["audience"]) for m in admin_copies] == [
            (None, "admin"),
            (first.event.pk, "admin"),
            (others.event.pk, "admin"),
        ]

    async def test_nothing_published_before_commit(self, memory_layer):
        admins = await subscribe(admin_group())

        def apply_and_peek():
            with transaction.atomic():
                apply_status_change(change())
                # Still inside the transaction: nothing may have gone out.
                return asyncio.run_coroutine_threadsafe(nothing_on(admins), loop).result()

        loop = asyncio.get_running_loop()
        assert await database_sync_to_async(apply_and_peek)()
        assert (await next_message(admins))["frame"]["status"] == "Approved"

    async def test_rollback_publishes_nothing_and_writes_nothing(self, memory_layer):
        admins = await subscribe(admin_group())

        def apply_then_fail():
            with transaction.atomic():
                apply_status_change(change())
                raise RuntimeError("the caller's transaction fails later")

        with pytest.raises(RuntimeError):
            await database_sync_to_async(apply_then_fail)()
        assert await nothing_on(admins)
        assert not await database_sync_to_async(StatusEvent.objects.exists)()
        assert not await database_sync_to_async(VerificationSession.objects.exists)()

    async def test_duplicates_publish_nothing(self, memory_layer):
        admins = await subscribe(admin_group())
        await database_sync_to_async(apply_status_change)(change(key="k"))
        await next_message(admins)
        await database_sync_to_async(apply_status_change)(change(key="k"))
        assert await nothing_on(admins)
