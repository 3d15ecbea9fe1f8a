"""A fake Didit API served over real HTTP on 127.0.0.1, from a thread.

Use the ``fake_didit`` fixture: it starts a server on a free port, points
``DIDIT_CHANNELS`` (API_BASE_URL, API_KEY, WORKFLOW_ID) at it for the test,
and stops it afterwards. Import it into a test module with::

    from tests.fake_didit import fake_didit  # noqa: F401

Out of the box it behaves like Didit's v3 API for the two calls the app makes:

- ``POST /v3/session/`` creates a session (status ``Not Started``) and answers
  201 with ``session_id``, ``url``, ``status``, ``vendor_data``, ``workflow_id``,
  ``callback``, ``session_token``; an unfinished session with the same
  ``vendor_data`` and workflow is returned again, as Didit does.
- ``GET /v3/session/<id>/decision/`` answers with that session's decision
  (``fake.set_decision(...)`` changes it), 404 for an unknown id.
- A missing ``x-api-key`` gets 403, a wrong one 401 (Didit's behaviour).

Scripted answers take precedence: ``fake.queue(method, path, status, json=...,
headers=...)`` appends responses for a path, served in order; the last one
stays in place once the others are used, so ``fake.queue("GET", p, 503)``
alone means "always 503". ``fake.requests`` records every request (method,
path, headers with lower-case names, body, parsed JSON, client port,
arrival time).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

FAKE_API_KEY = "fake-didit-api-key-" + "k" * 16
FAKE_WORKFLOW_ID = "11111111-2222-3333-4444-555555555555"
DECISION_PATH = re.compile(r"^/v3/session/(?P<session_id>[^/]+)/decision/$")
UNFINISHED = {"Not Started", "In Progress", "Resubmitted", "Awaiting User"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # The client's source port: equal ports mean one reused connection.
    client_port: int = 0
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class ScriptedResponse:
    status: int
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # Seconds to wait before answering (to exercise client timeouts).
    delay: float = 0.0


class FakeDidit:
    """State and scripting of the fake; the HTTP handler reads it under a lock."""

    def __init__(self, api_key: str = FAKE_API_KEY) -> None:
        self.api_key = api_key
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self._scripts: dict[tuple[str, str], deque[ScriptedResponse]] = {}
        self._lock = threading.Lock()

    # --- scripting ---------------------------------------------------------

    def queue(
        self,
        method: str,
        path: str,
        status: int,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        delay: float = 0.0,
    ) -> None:
        with self._lock:
            self._scripts.setdefault((method.upper(), path), deque()).append(
                ScriptedResponse(status, json, dict(headers or {}), body, delay)
            )

    def add_session(
        self,
        session_id: str | None = None,
        *,
        status: str = "Not Started",
        vendor_data: str = "",
        workflow_id: str = FAKE_WORKFLOW_ID,
        **decision: Any,
    ) -> str:
        session_id = session_id or str(uuid.uuid4())
        with self._lock:
            self.sessions[session_id] = {
                "session_id": session_id,
                "status": status,
                "vendor_data": vendor_data,
                "workflow_id": workflow_id,
                "url": f"https://verify.didit.me/session/{session_id}",
                **decision,
            }
        return session_id

    def set_decision(self, session_id: str, *, status: str, **decision: Any) -> None:
        with self._lock:
            self.sessions[session_id].update(status=status, **decision)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    # --- handling ----------------------------------------------------------

    def _scripted(self, method: str, path: str) -> ScriptedResponse | None:
        with self._lock:
            script = self._scripts.get((method, path))
            if not script:
                return None
            return script.popleft() if len(script) > 1 else script[0]

    def handle(self, request: RecordedRequest) -> ScriptedResponse:
        with self._lock:
            self.requests.append(request)
        scripted = self._scripted(request.method, request.path)
        if scripted is not None:
            return scripted
        key = request.headers.get("x-api-key")
        if not key:
            return ScriptedResponse(
                403, {"detail": "You do not have permission to perform this action."}
            )
        if key != self.api_key:
            return ScriptedResponse(401, {"detail": "Invalid API key."})
        if request.method == "POST" and request.path == "/v3/session/":
            return self._create(request)
        match = DECISION_PATH.match(request.path)
        if request.method == "GET" and match:
            with self._lock:
                session = self.sessions.get(match["session_id"])
                if session is None:
                    return ScriptedResponse(404, {"detail": "Not found."})
                return ScriptedResponse(200, dict(session))
        return ScriptedResponse(404, {"detail": "Not found."})

    def _create(self, request: RecordedRequest) -> ScriptedResponse:
        try:
            body = request.json
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("workflow_id"):
            return ScriptedResponse(400, {"workflow_id": ["This field is required."]})
        vendor_data = str(body.get("vendor_data") or "")
        with self._lock:
            for session in self.sessions.values():
                if (
                    vendor_data
                    and session["vendor_data"] == vendor_data
                    and session["workflow_id"] == body["workflow_id"]
                    and session["status"] in UNFINISHED
                ):
                    session["callback"] = body.get("callback")
                    return ScriptedResponse(201, dict(session))
        session_id = self.add_session(
            vendor_data=vendor_data,
            workflow_id=body["workflow_id"],
            callback=body.get("callback"),
            session_token=uuid.uuid4().hex,
        )
        with self._lock:
            return ScriptedResponse(201, dict(self.sessions[session_id]))


def _handler_for(fake: FakeDidit) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so the client's keep-alive pooling is exercised as in production.
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                client_port=self.client_address[1],
            )
            response = fake.handle(request)
            if response.delay:
                time.sleep(response.delay)
            if response.body is not None:
                payload = response.body
            elif response.json is not None:
                payload = json.dumps(response.json).encode()
            else:
                payload = b""
            self.send_response(response.status)
            if response.json is not None and response.body is None:
                self.send_header("Content-Type", "application/json")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            try:
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up first (a timeout test); nothing to answer.
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output quiet

    return Handler


class FakeDiditServer:
    """Runs a FakeDidit on 127.0.0.1 (free port) in a daemon thread."""

    def __init__(self, fake: FakeDidit | None = None) -> None:
        self.fake = fake or FakeDidit()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self.fake))
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.fake.url = f"http://{host}:{port}"
        # A short poll interval so shutdown() (every test's teardown) is quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-didit",
            daemon=True,
        )

    def __enter__(self) -> FakeDidit:
        self._thread.start()
        return self.fake

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def fake_didit(settings):
    """A running fake Didit; DIDIT_CHANNELS points the app's client at it."""
    with FakeDiditServer() as fake:
        settings.DIDIT_CHANNELS = {
            **(getattr(settings, "DIDIT_CHANNELS", None) or {}),
            "API_KEY": fake.api_key,
            "API_BASE_URL": fake.url,
            "WORKFLOW_ID": FAKE_WORKFLOW_ID,
            # Keep retries quick in tests; Retry-After from the fake still rules.
            "API_TIMEOUT_SECONDS": 2.0,
            "API_RETRY_MAX_WAIT_SECONDS": 2.0,
        }
        yield fake
