"""Tickets: POST /didit/api/tickets/ issues them, the socket handshake spends them."""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.utils import timezone

from didit_channels.live import access, tickets
from didit_channels.models import ConnectionTicket

URL = "/didit/api/tickets/"

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def view_all_permission() -> Permission:
    return Permission.objects.get(
        codename="view_all_sessions", content_type__app_label="didit_channels"
    )


def grant_through_group(user) -> Group:
    group, _ = Group.objects.get_or_create(name="Verification admins")
    group.permissions.add(view_all_permission())
    user.groups.add(group)
    return group


class TestIssuing:
    def test_jwt_user_gets_a_ticket_for_the_socket(self, jwt_client, alice):
        response = jwt_client(alice).post(URL)
        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"ticket", "expires_in", "url"}
        assert body["expires_in"] == 30
        assert body["url"] == "/ws/didit/"
        assert "no-store" in response["Cache-Control"]

    def test_ticket_carries_at_least_128_random_bits(self, jwt_client, alice):
        first = jwt_client(alice).post(URL).json()["ticket"]
        second = jwt_client(alice).post(URL).json()["ticket"]
        assert first != second
        named, secret = first.split(".")
        assert tickets.ticket_user(first) == alice.pk
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        assert len(raw) * 8 >= 128

    @pytest.mark.parametrize(
        "ticket",
        ["", "no-dot", "a.b.c", ".secret", "!!!!." + "s" * 43, "YWJj." + "s" * 43, "MQ.short"],
    )
    def test_a_ticket_not_shaped_like_one_names_nobody(self, ticket):
        # "YWJj" is base64 for "abc": not a primary key of the user model.
        assert tickets.ticket_user(ticket) is None

    def test_the_user_part_cannot_be_changed(self, alice, bob):
        ticket = tickets.issue(alice).ticket
        secret = ticket.split(".")[1]
        forged = f"{tickets._encode_user(bob.pk)}.{secret}"
        assert tickets.ticket_user(forged) == bob.pk
        assert tickets.consume(forged) is None  # the hash covers the user part
        assert tickets.consume(ticket).user_pk == alice.pk

    def test_only_the_hash_is_stored(self, jwt_client, alice):
        ticket = jwt_client(alice).post(URL).json()["ticket"]
        row = ConnectionTicket.objects.get(user=alice)
        assert row.token_hash == hashlib.sha256(ticket.encode()).hexdigest()
        stored = [str(value) for value in ConnectionTicket.objects.values_list().get()]
        assert not any(ticket in value for value in stored)

    def test_lifetime_follows_the_setting(self, jwt_client, alice, settings):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "TICKET_TTL_SECONDS": 5}
        before = timezone.now()
        body = jwt_client(alice).post(URL).json()
        assert body["expires_in"] == 5
        expires_at = ConnectionTicket.objects.get(user=alice).expires_at
        assert before + timedelta(seconds=5) <= expires_at <= timezone.now() + timedelta(seconds=5)

    def test_session_user_needs_the_csrf_token(self, alice, settings):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(alice)
        assert browser.post(URL).status_code == 403
        token = _get_new_csrf_string()
        browser.cookies[settings.CSRF_COOKIE_NAME] = token
        response = browser.post(URL, headers={"X-CSRFToken": token})
        assert response.status_code == 201
        assert response.json()["ticket"]

    def test_anonymous_caller_is_refused(self, client, db):
        assert client.post(URL).status_code == 401
        assert not ConnectionTicket.objects.exists()

    def test_deactivated_user_gets_no_ticket(self, jwt_client, alice):
        api = jwt_client(alice)
        alice.is_active = False
        alice.save()
        assert api.post(URL).status_code == 401
        with pytest.raises(ValueError):
            tickets.issue(alice)
        assert not ConnectionTicket.objects.exists()

    def test_only_post_is_allowed(self, jwt_client, alice):
        assert jwt_client(alice).get(URL).status_code == 405

    def test_throttled_per_user(self, jwt_client, alice, bob, settings):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "TICKET_THROTTLE_RATE": "3/min"}
        api = jwt_client(alice)
        assert [api.post(URL).status_code for _ in range(4)] == [201, 201, 201, 429]
        assert int(api.post(URL)["Retry-After"]) > 0
        assert jwt_client(bob).post(URL).status_code == 201

    def test_spent_and_expired_tickets_are_cleared_on_the_next_issue(self, alice):
        spent = tickets.issue(alice).ticket
        tickets.consume(spent)
        expired = tickets.issue(alice).ticket
        ConnectionTicket.objects.filter(token_hash=tickets.hash_ticket(expired)).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        live = tickets.issue(alice).ticket
        assert list(ConnectionTicket.objects.values_list("token_hash", flat=True)) == [
            tickets.hash_ticket(live)
        ]


class TestConsuming:
    def test_a_ticket_opens_once(self, alice):
        ticket = tickets.issue(alice).ticket
        admitted = tickets.consume(ticket)
        assert admitted is not None and admitted.user_pk == alice.pk
        assert tickets.consume(ticket) is None

    def test_expired_ticket_is_refused(self, alice):
        ticket = tickets.issue(alice).ticket
        ConnectionTicket.objects.update(expires_at=timezone.now() - timedelta(milliseconds=1))
        assert tickets.consume(ticket) is None

    @pytest.mark.parametrize("ticket", [None, "", "not-a-ticket", "x" * 5000])
    def test_unknown_ticket_is_refused(self, alice, ticket):
        tickets.issue(alice)
        assert tickets.consume(ticket) is None

    def test_plain_user_is_in_the_user_audience(self, alice, django_assert_num_queries):
        ticket = tickets.issue(alice).ticket
        with django_assert_num_queries(1):
            admitted = tickets.consume(ticket)
        assert (admitted.is_active, admitted.view_all, admitted.audiences) == (
            True,
            False,
            ["user"],
        )

    def test_superuser_is_in_the_admin_audience(self, superuser, django_assert_num_queries):
        ticket = tickets.issue(superuser).ticket
        with django_assert_num_queries(1):
            assert tickets.consume(ticket).audiences == ["user", "admin"]

    def test_direct_permission_puts_user_in_the_admin_audience(
        self, alice, django_assert_num_queries
    ):
        alice.user_permissions.add(view_all_permission())
        ticket = tickets.issue(alice).ticket
        with django_assert_num_queries(1):
            assert tickets.consume(ticket).view_all

    def test_group_permission_puts_user_in_the_admin_audience(
        self, alice, django_assert_num_queries
    ):
        grant_through_group(alice)
        ticket = tickets.issue(alice).ticket
        with django_assert_num_queries(1):
            assert tickets.consume(ticket).view_all

    def test_other_permissions_do_not_count(self, alice):
        alice.user_permissions.add(
            Permission.objects.get(
                codename="view_decision", content_type__app_label="didit_channels"
            )
        )
        assert not tickets.consume(tickets.issue(alice).ticket).view_all

    def test_user_deactivated_after_issue_is_reported_inactive(self, alice):
        ticket = tickets.issue(alice).ticket
        alice.is_active = False
        alice.save()
        assert tickets.consume(ticket).is_active is False

    def test_user_model_without_permissions_mixin_falls_back_to_has_perm(
        self, alice, superuser, monkeypatch
    ):
        # What a custom user model without PermissionsMixin gets: the backends decide.
        monkeypatch.setattr(access, "has_permissions_mixin", lambda: False)
        assert not tickets.consume(tickets.issue(alice).ticket).view_all
        assert tickets.consume(tickets.issue(superuser).ticket).view_all
        grant_through_group(alice)
        assert tickets.consume(tickets.issue(alice).ticket).view_all


class TestClientBinding:
    def test_off_by_default_any_address_may_use_the_ticket(self, jwt_client, alice):
        ticket = jwt_client(alice).post(URL, REMOTE_ADDR="10.0.0.1").json()["ticket"]
        assert ConnectionTicket.objects.get().client_ip is None
        assert tickets.consume(ticket, client_ip="10.9.9.9") is not None

    def test_bound_ticket_opens_only_from_the_address_that_asked(self, jwt_client, alice, settings):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "TICKET_BIND_CLIENT_IP": True}
        ticket = jwt_client(alice).post(URL, REMOTE_ADDR="10.0.0.1").json()["ticket"]
        assert tickets.consume(ticket, client_ip="10.0.0.2") is None
        assert tickets.consume(ticket, client_ip=None) is None
        # A wrong address does not spend it: the rightful client still can.
        assert tickets.consume(ticket, client_ip="10.0.0.1") is not None
        assert tickets.consume(ticket, client_ip="10.0.0.1") is None

    def test_ipv6_addresses_compare_canonically(self, alice, settings):
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "TICKET_BIND_CLIENT_IP": True}
        ticket = tickets.issue(alice, client_ip="2001:db8:0:0:0:0:0:1").ticket
        assert tickets.consume(ticket, client_ip="2001:db8::1") is not None


@pytest.mark.django_db(transaction=True)
def test_racing_handshakes_with_one_ticket_admit_exactly_one(alice):
    """The conditional UPDATE, with real concurrent transactions (meaningful on PostgreSQL)."""
    ticket = tickets.issue(alice).ticket
    racers = 8
    start = threading.Barrier(racers)
    results: list[object] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            start.wait(5)
            results.append(tickets.consume(ticket))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(results) == racers
    assert sum(result is not None for result in results) == 1
