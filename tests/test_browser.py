"""The pages in a real headless Chromium, against a real daphne serving the test database.

One daphne and one browser for the module. Alice's browser reaches the server through a
TCP forwarder whose cable the test can pull: her socket dies the way it does when Wi-Fi
drops (the browser sees an abnormal close, the server a lost connection), not through a
hook in the page. Her status page is also served with a strict Content-Security-Policy,
and any violation fails the test.

Screenshots go to test-output/browser/ (gitignored), with daphne's log.

Needs Debian's /usr/bin/chromium (Playwright's own browser download is not used); skipped
without it, a failure under DIDIT_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from didit_channels.models import StatusEvent
from didit_channels.testing import signed_webhook, status_payload
from tests.conftest import ENCRYPTION_KEY, WEBHOOK_SECRET, service_unavailable
from tests.servers import daphne, subprocess_database_url

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
# Generous: reconnecting after the cut includes the client's backoff (up to a few seconds).
WAIT_MS = 20_000


# --- the server ------------------------------------------------------------------------------


class CuttableLine:
    """A TCP forwarder to the server whose cable can be pulled and plugged back in.

    ``cut()`` resets every connection through it and refuses new ones until ``restore()``.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.connected = True
        self.transports: set[asyncio.BaseTransport] = set()

    def __enter__(self) -> CuttableLine:
        self.thread.start()
        self.server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cut()
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _accept(self, reader, writer) -> None:
        if not self.connected:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self.transports |= {writer.transport, upstream_writer.transport}
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.transports.discard(writer.transport)
            writer.transport.abort()

    async def _set(self, connected: bool) -> None:
        self.connected = connected
        if not connected:
            for transport in list(self.transports):
                transport.abort()
            self.transports.clear()

    def cut(self) -> None:
        self._run(self._set(False))

    def restore(self) -> None:
        self._run(self._set(True))


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        database_url = subprocess_database_url()
    env = {
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url,
        "DIDIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DIDIT_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # No Didit account: "Start verification" gets the API's 503 and shows its message.
        "DIDIT_API_KEY": "",
        "DIDIT_WORKFLOW_ID": "",
    }
    with daphne(env, log_path=OUTPUT / "daphne.log") as url:
        yield url


@pytest.fixture(scope="module")
def django_allows_playwrights_loop():
    """Playwright's sync API keeps an event loop running in this thread, which Django's
    async-safety check takes for async code calling the ORM; nothing here is async."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser(django_allows_playwrights_loop):
    if not CHROMIUM.exists():
        service_unavailable(f"Browser tests need Debian's chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("Browser tests need the playwright package (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def pages(browser, server, transactional_db):
    """``pages(base_url)``: a new browser context's page; all closed before the database
    is flushed, so no socket is still reading it."""
    contexts = []

    def open_page(base_url: str):
        context = browser.new_context(base_url=base_url, viewport={"width": 1200, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.problems = []
        page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                page.problems.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        return page

    yield open_page
    for context in contexts:
        context.close()


# --- helpers ---------------------------------------------------------------------------------


def log_in(page, username: str, password: str, next_path: str) -> None:
    page.goto(f"/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def send_webhook(server: str, session_id: str, status: str, owner, **fields) -> int:
    """Didit's signed webhook, to the real endpoint; returns the history id it created."""
    payload = status_payload(session_id, status, vendor_data=str(owner.pk), **fields)
    body, headers = signed_webhook(payload, WEBHOOK_SECRET)
    response = httpx.post(
        f"{server}/didit/webhook/",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return StatusEvent.objects.filter(session__session_id=session_id).latest("id").pk


def strict_csp(page, socket_origin: str) -> None:
    """Serve the status page with the policy a careful site would send."""
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {socket_origin}; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )

    def add_policy(route):
        response = route.fetch()
        route.fulfill(
            response=response,
            headers={**response.headers, "content-security-policy": policy},
        )

    page.route(re.compile(r".*/didit/status/$"), add_policy)


def shoot(page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def card(page, session_id: str):
    return page.locator(f'.didit-session[data-session-id="{session_id}"]')


# --- the tests -------------------------------------------------------------------------------


def test_alice_sees_changes_live_and_catches_up_once_after_her_network_drops(server, pages, alice):
    from playwright.sync_api import expect

    send_webhook(server, "alice-s1", "Not Started", alice)
    with CuttableLine(int(urlsplit(server).port)) as line:
        page = pages(line.url)
        tickets = []
        page.on(
            "request",
            lambda request: (
                tickets.append(request.url) if request.url.endswith("/didit/api/tickets/") else None
            ),
        )
        strict_csp(page, line.url.replace("http://", "ws://"))
        log_in(page, "alice", "alice", "/didit/status/")
        indicator = page.locator("[data-didit-connection]")
        expect(indicator).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        # Gone if the page reloads: proves every change below arrives in this same document.
        page.evaluate("window.sameDocument = true")

        in_progress = send_webhook(server, "alice-s1", "In Progress", alice)
        badge = card(page, "alice-s1").locator("[data-didit-badge]")
        expect(badge).to_have_text("In Progress", timeout=WAIT_MS)
        expect(card(page, "alice-s1").locator(f'[data-event-id="{in_progress}"]')).to_have_count(1)
        expect(page.locator("[data-didit-announcer]")).to_contain_text("now In Progress")
        shoot(page, "1-alice-live-update")

        line.cut()
        expect(indicator).to_have_attribute("data-state", "waiting", timeout=WAIT_MS)
        tickets_before = len(tickets)
        approved = send_webhook(server, "alice-s1", "Approved", alice)
        expect(badge).to_have_text("In Progress")  # nothing can reach her now
        shoot(page, "2-alice-offline")

        line.restore()
        expect(indicator).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        expect(badge).to_have_text("Approved", timeout=WAIT_MS)
        history = card(page, "alice-s1").locator("[data-event-id]")
        page.wait_for_timeout(1000)  # a duplicate, if any, would have landed by now
        expect(card(page, "alice-s1").locator(f'[data-event-id="{approved}"]')).to_have_count(1)
        expect(history).to_have_count(3)  # Not Started, In Progress, Approved: once each
        assert len(tickets) > tickets_before, "the reconnect must use a fresh ticket"
        assert page.evaluate("window.sameDocument") is True
        shoot(page, "3-alice-after-reconnect")
    assert page.problems == []


def test_bob_never_sees_alices_session(server, pages, alice, bob):
    from playwright.sync_api import expect

    page = pages(server)
    log_in(page, "bob", "bob", "/didit/status/")
    expect(page.locator("[data-didit-connection]")).to_have_attribute(
        "data-state", "live", timeout=WAIT_MS
    )
    send_webhook(server, "alice-s1", "In Review", alice)
    send_webhook(server, "bob-s1", "In Progress", bob)
    # Pushes arrive in id order: once bob's own (later) change is shown, alice's would be too.
    expect(card(page, "bob-s1").locator("[data-didit-badge]")).to_have_text(
        "In Progress", timeout=WAIT_MS
    )

    # The demo's "Simulate Didit" control, through the real webhook endpoint.
    form = page.locator("[data-didit-simulate]")
    form.locator("select[name=session_id]").select_option("")
    form.locator("select[name=status]").select_option("Awaiting User")
    form.locator("button[type=submit]").click()
    expect(form.locator("[data-didit-simulate-message]")).to_contain_text(
        "Awaiting User", timeout=WAIT_MS
    )
    demo = page.locator('.didit-session[data-session-id^="demo-"]')
    expect(demo.locator("[data-didit-badge]")).to_have_text("Awaiting User", timeout=WAIT_MS)

    expect(page.locator(".didit-session")).to_have_count(2)
    assert "alice-s1" not in page.content()

    page.get_by_role("button", name="Start verification").click()
    expect(page.locator("[data-didit-start-message]")).to_contain_text(
        "DIDIT_API_KEY", timeout=WAIT_MS
    )
    shoot(page, "4-bob-status-page")
    assert page.problems == []


def test_admin_desk_shows_everyones_changes_and_the_queue(server, pages, alice, bob, superuser):
    from playwright.sync_api import expect

    page = pages(server)
    log_in(page, "admin", "admin", "/admin/didit_channels/verificationsession/")
    page.get_by_role("link", name="Live desk").click()
    page.wait_for_url("**/didit/desk/")
    expect(page.locator("[data-didit-connection]")).to_have_attribute(
        "data-state", "live", timeout=WAIT_MS
    )

    now = int(time.time())
    send_webhook(server, "alice-s1", "In Progress", alice, timestamp=now - 150)
    send_webhook(server, "bob-s1", "In Review", bob)
    send_webhook(server, "alice-s1", "Approved", alice, timestamp=now)

    feed = page.locator("[data-didit-feed] .didit-feed-item")
    expect(feed).to_have_count(3, timeout=WAIT_MS)
    alice_link = feed.first.get_by_role("link", name="alice-s1")
    expect(alice_link).to_have_attribute("href", "/didit/desk/sessions/alice-s1/")
    expect(feed.nth(1)).to_contain_text("bob-s1")
    expect(feed.nth(1).locator(".didit-feed-user")).to_have_text("bob", timeout=WAIT_MS)

    def bar(status):
        return page.locator(f'.didit-bar[data-status="{status}"] .didit-bar-count')

    expect(bar("Approved")).to_have_text("1", timeout=WAIT_MS)
    expect(bar("In Review")).to_have_text("1")
    expect(bar("In Progress")).to_have_text("0")
    expect(page.locator("[data-didit-median]")).to_have_text("2 min 30 s", timeout=WAIT_MS)
    shoot(page, "5-admin-desk")

    alice_link.click()
    expect(page.locator("#content")).to_contain_text("alice-s1")
    assert "/admin/didit_channels/verificationsession/" in page.url
    assert page.problems == []


def test_logging_out_in_another_tab_stops_the_status_page(server, pages, alice):
    from playwright.sync_api import expect

    page = pages(server)
    log_in(page, "alice", "alice", "/didit/status/")
    indicator = page.locator("[data-didit-connection]")
    expect(indicator).to_have_attribute("data-state", "live", timeout=WAIT_MS)

    # The same browser, another tab: the demo header's "Log out" button.
    other_tab = page.context.new_page()
    other_tab.goto("/")
    other_tab.get_by_role("button", name="Log out alice").click()
    other_tab.wait_for_load_state()

    expect(indicator).to_have_attribute("data-state", "stopped", timeout=WAIT_MS)
    expect(indicator).to_have_attribute("data-reason", "signed-out")
    expect(indicator).to_contain_text("Signed out. Log in again")
    # Stopped for good: no retry is scheduled, so no new ticket is asked for.
    tickets = []
    page.on("request", lambda r: tickets.append(r.url) if "/api/tickets/" in r.url else None)
    page.wait_for_timeout(1500)
    assert tickets == []
    expect(indicator).to_have_attribute("data-state", "stopped")
    shoot(page, "6-alice-signed-out")
    assert page.problems == []


def test_a_password_change_elsewhere_stops_a_page_whose_login_it_ended(server, pages, alice):
    """Another browser changes alice's password (Django's own form): the page signed in
    before the change loses its socket, cannot get a new ticket (Django flushed its
    login) and stops; the browser that changed it goes on live."""
    from playwright.sync_api import expect

    send_webhook(server, "alice-pw-1", "In Review", alice)
    page = pages(server)
    log_in(page, "alice", "alice", "/didit/status/")
    indicator = page.locator("[data-didit-connection]")
    expect(indicator).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    expect(page.locator(".didit-session")).to_have_count(1)

    other = pages(server)  # another browser: its own login session
    log_in(other, "alice", "alice", "/accounts/password_change/")
    other.fill("input[name=old_password]", "alice")
    other.fill("input[name=new_password1]", "a-new-long-password-77")
    other.fill("input[name=new_password2]", "a-new-long-password-77")
    other.locator("form input[type=submit], form button[type=submit]").last.click()
    other.wait_for_url("**/password_change/done/")

    expect(indicator).to_have_attribute("data-state", "stopped", timeout=WAIT_MS)
    expect(indicator).to_have_attribute("data-reason", "signed-out")
    # The page left open no longer shows alice's sessions.
    expect(page.locator(".didit-session")).to_have_count(0)
    expect(page.locator("[data-didit-sessions]")).to_be_hidden()
    other.goto("/didit/status/")
    expect(other.locator("[data-didit-connection]")).to_have_attribute(
        "data-state", "live", timeout=WAIT_MS
    )
    assert page.problems == []


def test_the_desk_forgets_what_it_showed_when_the_admin_signs_out(server, pages, alice, superuser):
    from playwright.sync_api import expect

    send_webhook(server, "alice-desk-1", "Declined", alice)
    page = pages(server)
    log_in(page, "admin", "admin", "/didit/desk/")
    indicator = page.locator("[data-didit-connection]")
    expect(indicator).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    expect(page.locator("[data-didit-feed] .didit-feed-item")).to_have_count(1)

    other_tab = page.context.new_page()
    other_tab.goto("/")
    other_tab.get_by_role("button", name="Log out admin").click()
    other_tab.wait_for_load_state()

    expect(indicator).to_have_attribute("data-reason", "signed-out", timeout=WAIT_MS)
    expect(page.locator("[data-didit-feed] .didit-feed-item")).to_have_count(0)
    expect(page.locator(".didit-bar")).to_have_count(0)
    expect(page.locator("#didit-desk-stats")).to_have_count(0)
    expect(page.locator("#content")).not_to_contain_text("alice")
    assert page.problems == []
