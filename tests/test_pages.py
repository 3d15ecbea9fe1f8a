"""The pages without a browser: status page, live desk and its figures, admin actions, simulate.

What the pages do in a real browser (live updates, reconnect, resume) is in test_browser.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import AsyncClient, Client

from didit_channels import desk, views
from didit_channels.live.groups import user_group
from didit_channels.models import StatusEvent, VerificationSession, WebhookDelivery
from didit_channels.state import StatusChange, apply_status_change, derive_dedupe_key
from tests.fake_didit import fake_didit  # noqa: F401

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
CHANGELIST = "/admin/didit_channels/verificationsession/"


def change(session_id: str, status: str, at: datetime, user=None) -> StatusEvent:
    """Apply a status change through the real path; returns its history row."""
    applied = apply_status_change(
        StatusChange(
            session_id=session_id,
            status=status,
            occurred_at=at,
            dedupe_key=derive_dedupe_key(None, session_id, status, "status.updated", at),
            user=user,
        )
    )
    assert applied.event is not None
    return applied.event


class PageAudit(HTMLParser):
    """Collects what a strict Content-Security-Policy would block."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str] = []
        self.handlers: list[str] = []
        self.style_attributes: list[str] = []
        self.style_elements = 0
        self.module_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, _value in attrs:
            if name.startswith("on"):
                self.handlers.append(f"<{tag} {name}>")
            if name == "style":
                self.style_attributes.append(tag)
        if tag == "style":
            self.style_elements += 1
        if tag == "script":
            kind = (attributes.get("type") or "").lower()
            if attributes.get("src"):
                if kind == "module":
                    self.module_scripts.append(attributes["src"])
            elif kind != "application/json":
                self._in_inline_script = True
                self.inline_scripts.append("")

    def handle_data(self, data):
        if self._in_inline_script:
            self.inline_scripts[-1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_inline_script = False


def audit(html: bytes) -> PageAudit:
    parser = PageAudit()
    parser.feed(html.decode())
    return parser


# --- status page ---------------------------------------------------------------------------


@pytest.fixture
def alice_sessions(alice, bob):
    change("alice-1", "Not Started", T0, user=alice)
    change("alice-1", "In Progress", T0 + timedelta(minutes=1))
    latest = change("alice-1", "Approved", T0 + timedelta(minutes=5))
    change("bob-1", "In Review", T0 + timedelta(minutes=6), user=bob)
    return latest


def test_status_page_needs_login(client):
    response = client.get("/didit/status/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/didit/status/")


def test_status_page_shows_own_sessions_with_history_newest_first(client, alice, alice_sessions):
    client.force_login(alice)
    response = client.get("/didit/status/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-session-id="alice-1"' in page
    assert "bob-1" not in page
    history = [e.pk for e in StatusEvent.objects.filter(session__session_id="alice-1")]
    positions = [page.index(f'data-event-id="{pk}"') for pk in history]
    assert positions == sorted(positions, reverse=True)
    assert 'data-didit-badge data-status="Approved"' in page


def test_status_page_resumes_from_the_users_latest_event(client, alice, alice_sessions):
    client.force_login(alice)
    page = client.get("/didit/status/").content.decode()
    # Bob's later event is not this page's cursor: his ids are none of alice's business.
    assert f'data-cursor="{alice_sessions.pk}"' in page
    assert 'data-tickets-url="/didit/api/tickets/"' in page


def test_status_page_has_nothing_a_strict_csp_blocks(client, alice, alice_sessions, settings):
    settings.DEBUG = True  # the simulate form too
    client.force_login(alice)
    found = audit(client.get("/didit/status/").content)
    assert found.inline_scripts == []
    assert found.handlers == []
    assert found.style_attributes == []
    assert found.style_elements == 0
    assert found.module_scripts == ["/static/didit_channels/status.js"]


def test_status_page_is_accessible_markup(client, alice, alice_sessions):
    client.force_login(alice)
    page = client.get("/didit/status/").content.decode()
    assert 'aria-live="polite"' in page and "data-didit-announcer" in page
    assert 'role="status"' in page and "data-didit-connection" in page
    assert '<html lang="en">' in page


def test_simulate_control_only_with_debug(client, alice, settings):
    client.force_login(alice)
    settings.DEBUG = False
    assert b"data-didit-simulate" not in client.get("/didit/status/").content
    settings.DEBUG = True
    assert b"data-didit-simulate" in client.get("/didit/status/").content


def test_host_site_can_override_a_template(client, alice, alice_sessions, settings, tmp_path):
    override = tmp_path / "didit_channels" / "_session.html"
    override.parent.mkdir()
    override.write_text('<li class="house-style">{{ session.session_id }}</li>')
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}
    ]
    client.force_login(alice)
    assert b'<li class="house-style">alice-1</li>' in client.get("/didit/status/").content


def test_home_page_links_the_pages(client):
    page = client.get("/").content.decode()
    for url in ("/didit/status/", "/didit/desk/", CHANGELIST, "/didit/webhook/"):
        assert url in page


# --- live desk -----------------------------------------------------------------------------


def test_desk_needs_the_view_all_permission(client, alice):
    assert client.get("/didit/desk/").status_code == 302
    client.force_login(alice)
    assert client.get("/didit/desk/").status_code == 403
    assert client.get("/didit/desk/stats/").status_code == 403
    assert client.get("/didit/desk/sessions/alice-1/").status_code == 403


def test_desk_shows_every_users_changes_linked_to_their_admin_page(
    client, verification_admin, alice_sessions, alice, bob
):
    client.force_login(verification_admin)
    response = client.get("/didit/desk/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/didit/desk/sessions/alice-1/" in page and "/didit/desk/sessions/bob-1/" in page
    assert ">alice</span>" in page and ">bob</span>" in page
    assert f'data-cursor="{StatusEvent.objects.latest("id").pk}"' in page
    found = audit(response.content)
    assert "/static/didit_channels/desk.js" in found.module_scripts
    assert [s for s in found.inline_scripts if s.strip()] == []
    users = client.get("/didit/desk/stats/").json()["users"]
    assert users == {str(alice.pk): "alice", str(bob.pk): "bob"}


def test_desk_session_link_redirects_to_the_admin_change_page(client, superuser, alice_sessions):
    client.force_login(superuser)
    session = VerificationSession.objects.get(session_id="alice-1")
    response = client.get("/didit/desk/sessions/alice-1/")
    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}{session.pk}/change/"
    assert client.get("/didit/desk/sessions/nope/").status_code == 404


def test_sessions_changelist_links_the_desk(client, superuser):
    client.force_login(superuser)
    page = client.get(CHANGELIST).content.decode()
    assert 'href="/didit/desk/"' in page and "Live desk" in page


def counts(stats) -> dict[str, int]:
    return {row["status"]: row["count"] for row in stats["counts"] if row["count"]}


def test_desk_figures_count_sessions_by_current_status_and_median_time_to_decision(
    client, superuser, db
):
    minute = timedelta(minutes=1)
    change("s1", "In Progress", T0)
    change("s1", "Approved", T0 + minute)  # 60 s
    change("s2", "Not Started", T0)
    change("s2", "In Progress", T0 + 10 * minute)
    change("s2", "Declined", T0 + 5 * minute * 4)  # 1200 s from its first event
    change("s3", "In Progress", T0)
    change("s3", "In Review", T0 + minute)  # no decision yet
    change("s4", "Approved", T0)  # 0 s
    change("s5", "Fancy New Status", T0)  # unknown statuses are counted too

    client.force_login(superuser)
    stats = client.get("/didit/desk/stats/").json()
    assert counts(stats) == {"Approved": 2, "Declined": 1, "In Review": 1, "Fancy New Status": 1}
    assert [row["status"] for row in stats["counts"]][-1] == "Fancy New Status"
    assert (stats["total"], stats["open"]) == (5, 2)
    assert (stats["median_seconds"], stats["decided"]) == (60, 3)  # of 0, 60, 1200
    assert stats["cursor"] == StatusEvent.objects.latest("id").pk
    assert stats["users"] == {}  # these sessions have no owner

    # A later decision does not restart the clock: the first one counts.
    change("s1", "Resubmitted", T0 + 2 * minute)
    change("s1", "Approved", T0 + 100 * minute)
    change("s6", "In Progress", T0)
    change("s6", "Approved", T0 + 40 * minute)  # 2400 s
    stats = client.get("/didit/desk/stats/").json()
    assert (stats["median_seconds"], stats["decided"]) == (630, 4)  # mean of 60 and 1200


def test_desk_figures_without_decisions(db):
    assert desk.median_decision_time() == (None, 0)
    assert views.format_duration(None) == "–"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (59.4, "59 s"),
        (61, "1 min 1 s"),
        (3 * 3600 + 120, "3 h 2 min"),
        (50 * 3600, "2 d 2 h"),
    ],
)
def test_duration_text(seconds, text):
    assert views.format_duration(seconds) == text


# --- admin actions -------------------------------------------------------------------------


async def receive(layer, channel, timeout=2.0):
    return await asyncio.wait_for(layer.receive(channel), timeout)


@pytest.fixture
async def close_thread_connections():
    """Close the connection the async ORM opened in its worker thread (PostgreSQL would
    otherwise refuse to drop the test database while it is open)."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_resend_publishes_the_latest_status_to_the_owner(
    any_layer, alice, superuser, close_thread_connections
):
    await sync_to_async(change)("alice-1", "In Progress", T0, user=alice)
    latest = await sync_to_async(change)("alice-1", "Approved", T0 + timedelta(minutes=2))
    session = await VerificationSession.objects.aget(session_id="alice-1")
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(user_group(alice.pk), channel)

    client = AsyncClient()
    await client.aforce_login(superuser)
    response = await client.post(
        CHANGELIST, {"action": "resend_status", "_selected_action": [session.pk]}
    )
    assert response.status_code == 302
    message = await receive(layer, channel)
    assert message["type"] == "didit.status"
    assert message["frame"]["id"] == latest.pk
    assert message["frame"]["status"] == "Approved"
    assert message["prev"] is None  # a repeat: no gap for clients to fill


@pytest.mark.django_db(transaction=True)
async def test_resend_needs_the_live_permission(
    memory_layer, alice, django_user_model, close_thread_connections
):
    await sync_to_async(change)("alice-1", "Approved", T0, user=alice)
    session = await VerificationSession.objects.aget(session_id="alice-1")
    clerk = await django_user_model.objects.acreate(username="clerk", is_staff=True)
    view = await Permission.objects.aget(codename="view_verificationsession")
    await clerk.user_permissions.aadd(view)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(user_group(alice.pk), channel)

    client = AsyncClient()
    await client.aforce_login(clerk)
    page = await client.get(CHANGELIST)
    assert page.status_code == 200 and b"resend_status" not in page.content
    await client.post(CHANGELIST, {"action": "resend_status", "_selected_action": [session.pk]})
    with pytest.raises(TimeoutError):
        await receive(layer, channel, timeout=0.3)


def test_refetch_applies_didits_decision_as_an_admin_change(
    client,
    superuser,
    alice,
    fake_didit,  # noqa: F811
):
    change("alice-1", "In Review", T0, user=alice)
    fake_didit.add_session("alice-1", status="Approved", id_verification={"status": "Approved"})
    session = VerificationSession.objects.get(session_id="alice-1")
    client.force_login(superuser)

    response = client.post(
        CHANGELIST, {"action": "refetch_decision", "_selected_action": [session.pk]}, follow=True
    )
    assert "Re-fetched from Didit: alice-1: Approved" in response.content.decode()
    session.refresh_from_db()
    assert session.status == "Approved"
    assert session.decision["id_verification"] == {"status": "Approved"}
    event = session.events.latest("id")
    assert (event.previous_status, event.status, event.source) == ("In Review", "Approved", "admin")
    assert len(fake_didit.requests_to("GET", "/v3/session/alice-1/decision/")) == 1


def test_refetch_reports_didits_refusal_and_changes_nothing(
    client,
    superuser,
    alice,
    fake_didit,  # noqa: F811
):
    change("alice-1", "In Review", T0, user=alice)  # Didit does not know it: 404
    session = VerificationSession.objects.get(session_id="alice-1")
    client.force_login(superuser)
    response = client.post(
        CHANGELIST, {"action": "refetch_decision", "_selected_action": [session.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "Could not re-fetch: alice-1" in response.content.decode()
    assert VerificationSession.objects.get(pk=session.pk).status == "In Review"
    assert session.events.count() == 1


def test_refetch_without_an_api_key_says_which_setting_to_set(client, superuser, alice, settings):
    change("alice-1", "In Review", T0, user=alice)
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "API_KEY": ""}
    session = VerificationSession.objects.get(session_id="alice-1")
    client.force_login(superuser)
    response = client.post(
        CHANGELIST, {"action": "refetch_decision", "_selected_action": [session.pk]}, follow=True
    )
    assert "DIDIT_API_KEY" in response.content.decode()
    assert session.events.count() == 1


# --- simulate Didit (DEBUG only) -------------------------------------------------------------

SIMULATE = "/didit/demo/simulate/"
JSON = {"Accept": "application/json"}


def test_simulate_is_not_there_without_debug(client, alice, settings):
    settings.DEBUG = False
    client.force_login(alice)
    assert client.post(SIMULATE, {"status": "Approved"}, headers=JSON).status_code == 404


def test_simulate_needs_login_and_csrf(alice, settings):
    settings.DEBUG = True
    anonymous = Client()
    assert anonymous.post(SIMULATE, {"status": "Approved"}).status_code == 302
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post(SIMULATE, {"status": "Approved"}, headers=JSON).status_code == 403
    assert WebhookDelivery.objects.count() == 0


def test_simulate_refuses_unknown_statuses(client, alice, settings):
    settings.DEBUG = True
    client.force_login(alice)
    response = client.post(SIMULATE, {"status": "Hacked"}, headers=JSON)
    assert response.status_code == 400


@pytest.fixture
def via_live_server(live_server, settings):
    """A client whose requests name the live server as their host: simulate posts there."""
    settings.DEBUG = True
    return Client(HTTP_HOST=live_server.url.removeprefix("http://"))


def test_simulate_sends_a_signed_webhook_for_the_users_own_session(via_live_server, alice):
    change("alice-1", "In Progress", T0, user=alice)
    via_live_server.force_login(alice)
    response = via_live_server.post(
        SIMULATE, {"session_id": "alice-1", "status": "Approved"}, headers=JSON
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"session_id": "alice-1", "status": "Approved", "webhook_status": 200}
    assert VerificationSession.objects.get(session_id="alice-1").status == "Approved"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.signature_valid, delivery.outcome) == (True, "accepted")


def test_simulate_without_a_session_starts_a_demo_session_owned_by_the_caller(
    via_live_server, alice
):
    via_live_server.force_login(alice)
    response = via_live_server.post(SIMULATE, {"status": "In Progress"}, headers=JSON)
    assert response.status_code == 200, response.content
    session = VerificationSession.objects.get(session_id=response.json()["session_id"])
    assert (session.user, session.status, session.vendor_data) == (
        alice,
        "In Progress",
        str(alice.pk),
    )


def test_simulate_cannot_touch_another_users_session(via_live_server, alice, bob):
    change("alice-1", "In Progress", T0, user=alice)
    via_live_server.force_login(bob)
    response = via_live_server.post(
        SIMULATE, {"session_id": "alice-1", "status": "Declined"}, headers=JSON
    )
    assert response.status_code == 404
    assert VerificationSession.objects.get(session_id="alice-1").status == "In Progress"
    assert WebhookDelivery.objects.count() == 0
