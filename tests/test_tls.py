"""The demo over TLS, as ``make demo-tls`` serves it: https and wss from daphne's own
TLS endpoint, with the certificate scripts/make_dev_cert.py makes.

One daphne process (started as the make target starts it, on a free port, against the
test database) for one test, because starting servers is slow. Every client verifies
the server against the generated certificate and nothing else: a ticket over https
(JWT), the socket over wss (hello, snapshot), a session login whose cookies are
Secure, and "Simulate Didit", whose webhook the server posts to its own https address
and which reaches the socket as a status frame. A client that trusts only the public
roots is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from rest_framework_simplejwt.tokens import AccessToken
from websockets.asyncio.client import connect

from tests.conftest import ENCRYPTION_KEY, WEBHOOK_SECRET
from tests.servers import stop_process, subprocess_database_url

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_dev_cert.py"
LISTENING = re.compile(r"Listening on TCP address 127\.0\.0\.1:(\d+)")
PASSWORD = "tls-test-password"


def make_certificate(directory: Path) -> str:
    """Run the script as ``make demo-tls`` does; its output line."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_the_certificate_is_made_on_first_run_and_kept_after(tmp_path):
    directory = tmp_path / "demo-tls"
    assert "(made)" in make_certificate(directory)
    first = (directory / "cert.pem").read_bytes()
    assert "(kept)" in make_certificate(directory)
    assert (directory / "cert.pem").read_bytes() == first

    certificate = x509.load_pem_x509_certificate(first)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert stat.S_IMODE((directory / "key.pem").stat().st_mode) == 0o600
    # The server's own client trusts the public roots and the demo certificate.
    trust = (directory / "trust.pem").read_bytes()
    assert trust.endswith(first) and trust.count(b"BEGIN CERTIFICATE") > 1


@contextlib.contextmanager
def tls_daphne(tls_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """daphne on a TLS endpoint (port 0: the kernel picks), as the make target runs it.

    Yields ``https://127.0.0.1:<port>``, read from daphne's log once it listens.
    """
    endpoint = (
        f"ssl:0:privateKey={tls_dir / 'key.pem'}:certKey={tls_dir / 'cert.pem'}:interface=127.0.0.1"
    )
    log = tempfile.NamedTemporaryFile(prefix="didit-daphne-tls-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-e", endpoint, "project.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not (found := LISTENING.search(Path(log.name).read_text())):
            assert process.poll() is None, Path(log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, Path(log.name).read_text()[-3000:]
            time.sleep(0.1)
        yield f"https://127.0.0.1:{found.group(1)}"
    finally:
        stop_process(process)
        log.close()
        os.unlink(log.name)


async def next_frame(ws, timeout: float = 10) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def log_in(client: httpx.Client, base: str, username: str) -> httpx.Response:
    """Django's login form over https: CSRF cookie, token, Referer (required on https)."""
    login = f"{base}/accounts/login/"
    client.get(login).raise_for_status()
    response = client.post(
        login,
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": login},
    )
    assert response.status_code == 302, response.text[:500]
    return response


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_https_and_wss_verified_against_the_generated_certificate(
    tmp_path, settings, django_user_model
):
    alice = django_user_model.objects.create_user("alice", password=PASSWORD)
    tls_dir = tmp_path / "demo-tls"
    make_certificate(tls_dir)
    trusted = ssl.create_default_context(cafile=str(tls_dir / "cert.pem"))
    env = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},  # the demo's own layer
        "DATABASE_URL": subprocess_database_url(),
        "DJANGO_DEBUG": "1",  # Simulate Didit is a DEBUG-only control
        "DJANGO_TLS": "1",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # JWTs minted here verify there
        "DIDIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DIDIT_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "SSL_CERT_FILE": str(tls_dir / "trust.pem"),
    }

    with tls_daphne(tls_dir, env) as base:
        # Only a client that trusts the generated certificate gets through.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{base}/", timeout=10)
        # The certificate names localhost as well as 127.0.0.1 (hostname verified).
        localhost = base.replace("127.0.0.1", "localhost")
        assert httpx.get(f"{localhost}/", verify=trusted, timeout=10).status_code == 200

        ticket = httpx.post(
            f"{base}/didit/api/tickets/",
            headers={"Authorization": f"Bearer {AccessToken.for_user(alice)}"},
            verify=trusted,
            timeout=10,
        )
        assert ticket.status_code == 201, ticket.text
        socket_url = base.replace("https://", "wss://") + ticket.json()["url"]

        async def scenario() -> None:
            async with connect(
                f"{socket_url}?ticket={ticket.json()['ticket']}",
                ssl=trusted,
                origin=base,
                ping_interval=None,
            ) as ws:
                hello = await next_frame(ws)
                assert hello["type"] == "hello" and hello["user"] == alice.pk
                assert (await next_frame(ws))["type"] == "snapshot"

                with httpx.Client(verify=trusted, timeout=20) as browser:
                    login = log_in(browser, base, "alice")
                    cookies = login.headers.get_list("set-cookie")
                    assert any(c.startswith("sessionid=") and "Secure" in c for c in cookies)
                    assert any(c.startswith("csrftoken=") and "Secure" in c for c in cookies)
                    # The server posts the signed webhook to its own https address.
                    simulated = await asyncio.to_thread(
                        browser.post,
                        f"{base}/didit/demo/simulate/",
                        data={"status": "Approved"},
                        headers={
                            "Accept": "application/json",
                            "X-CSRFToken": browser.cookies["csrftoken"],
                            "Referer": f"{base}/didit/status/",
                        },
                    )
                assert simulated.status_code == 200, simulated.text
                assert simulated.json()["webhook_status"] == 200

                frame = await next_frame(ws)
                assert frame["type"] == "status"
                assert frame["session_id"] == simulated.json()["session_id"]
                assert frame["status"] == "Approved" and frame["user"] == alice.pk

        asyncio.run(scenario())
