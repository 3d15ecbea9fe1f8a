"""A small client for the Didit verification API (v3): create a session, fetch a decision.

Built on httpx: explicit timeouts, connection pooling and one well-kept
library for sync and async code (requests has no async API and urllib3/urllib
leave pooling, timeouts and retries to the caller).

Failures are typed, all under ``DiditAPIError``::

    DiditAPIError
    ├── DiditNotConfigured     no API key (or no workflow id for create_session)
    ├── DiditConnectionError   network error or timeout, after the retries
    ├── DiditRateLimited       429, after the retries (``retry_after`` in seconds)
    ├── DiditServerError       5xx, after the retries
    ├── DiditClientError       any other 4xx (bad key, bad request)
    │   └── DiditNotFound      404: Didit does not know the session
    └── DiditInvalidResponse   2xx whose body is not a JSON object

429, 5xx and network errors are retried at most ``API_MAX_RETRIES`` times.
A ``Retry-After`` header is honoured: the client never retries sooner than it
says. It is also capped: if Didit asks for a longer wait than
``API_RETRY_MAX_WAIT_SECONDS``, the call fails at once with
``DiditRateLimited`` instead of holding a web request (or a worker) asleep.
Retrying ``POST /v3/session/`` is safe because Didit returns the existing
unfinished session for the same ``vendor_data`` rather than creating another.

The API key travels only in the ``x-api-key`` header; it never appears in a
log line, an exception message or ``repr()``.

Caveat: used without ``with``, each call opens and closes its own connection
pool, so ``DiditClient.from_settings().get_decision(session_id)`` leaks
nothing. Wrap many calls in ``with DiditClient.from_settings() as client:``
to reuse connections.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from .conf import didit_settings

logger = logging.getLogger("didit_channels.client")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Didit's error bodies are short ({"detail": "..."}); anything longer is not
# copied into messages, which may end up in logs.
MAX_DETAIL_CHARS = 200


class DiditAPIError(Exception):
    """Base class: the Didit API could not give an answer.

    ``status_code`` is Didit's HTTP status when there was one; ``detail`` is
    Didit's own short error message, when it sent one. Neither ever contains
    the API key.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class DiditNotConfigured(DiditAPIError):
    """A setting the call needs is empty. The message names the setting."""


class DiditConnectionError(DiditAPIError):
    """Didit could not be reached, or did not answer within the timeout."""


class DiditRateLimited(DiditAPIError):
    """Didit answered 429. ``retry_after`` is its Retry-After, in seconds, if sent."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DiditServerError(DiditAPIError):
    """Didit answered with a 5xx status."""


class DiditClientError(DiditAPIError):
    """Didit refused the request (4xx other than 429): check the key and the input."""


class DiditNotFound(DiditClientError):
    """Didit does not know this session (404)."""


class DiditInvalidResponse(DiditAPIError):
    """Didit answered 2xx, but not with a JSON object."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _safe_detail(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return detail[:MAX_DETAIL_CHARS]
    return None


class DiditClient:
    """Synchronous Didit API client. See the module docstring for errors and retries."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://verification.didit.me",
        workflow_id: str = "",
        timeout: float = 10.0,
        max_retries: int = 3,
        max_retry_wait: float = 5.0,
        backoff_base: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise DiditNotConfigured(
                'No Didit API key is configured. Set DIDIT_CHANNELS["API_KEY"] (or the '
                "DIDIT_API_KEY environment variable) to the API key from Didit's console "
                "(Settings > API & Webhooks)."
            )
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.workflow_id = workflow_id
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.max_retry_wait = max(0.0, float(max_retry_wait))
        self.backoff_base = max(0.0, float(backoff_base))
        self._sleep = sleep
        self._transport = transport
        self._http: httpx.Client | None = None

    @classmethod
    def from_settings(cls, **overrides: Any) -> DiditClient:
        """A client configured from ``DIDIT_CHANNELS``; raises DiditNotConfigured without a key."""
        options: dict[str, Any] = {
            "base_url": didit_settings.API_BASE_URL,
            "workflow_id": didit_settings.WORKFLOW_ID,
            "timeout": didit_settings.API_TIMEOUT_SECONDS,
            "max_retries": didit_settings.API_MAX_RETRIES,
            "max_retry_wait": didit_settings.API_RETRY_MAX_WAIT_SECONDS,
        }
        options.update(overrides)
        return cls(didit_settings.API_KEY, **options)

    def __repr__(self) -> str:
        return f"<DiditClient {self.base_url}>"

    # --- connection handling ---------------------------------------------

    def _new_http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            headers={"x-api-key": self._api_key, "accept": "application/json"},
            transport=self._transport,
            # Didit never redirects API calls; following one could send the
            # key to another host.
            follow_redirects=False,
        )

    def __enter__(self) -> DiditClient:
        self._http = self._new_http()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # --- API ---------------------------------------------------------------

    def create_session(
        self, vendor_data: str, callback: str | None = None, workflow_id: str | None = None
    ) -> dict[str, Any]:
        """``POST /v3/session/``: start a verification; returns Didit's JSON object.

        The answer carries ``session_id``, ``url`` (the hosted verification
        page), ``status`` and, among others, ``session_token``. ``vendor_data``
        is how a webhook finds its user again: by default the user's primary key.
        """
        workflow = workflow_id or self.workflow_id
        if not workflow:
            raise DiditNotConfigured(
                'No Didit workflow is configured. Set DIDIT_CHANNELS["WORKFLOW_ID"] (or the '
                "DIDIT_WORKFLOW_ID environment variable) to a workflow id from Didit's console."
            )
        body: dict[str, Any] = {"workflow_id": workflow, "vendor_data": str(vendor_data)}
        if callback:
            body["callback"] = callback
        return self._request("POST", "/v3/session/", json=body)

    def get_decision(self, session_id: str) -> dict[str, Any]:
        """``GET /v3/session/{id}/decision/``: the session's status and full decision.

        The answer holds personal data (names, documents, images): store it
        only in the encrypted ``decision`` field, never log it.
        """
        if not session_id or not isinstance(session_id, str):
            raise ValueError("session_id must be a non-empty string")
        # Quoted so an odd id can never reach another API path.
        return self._request("GET", f"/v3/session/{quote(session_id, safe='')}/decision/")

    # --- internals ---------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        # Full jitter keeps many workers from retrying in lockstep.
        return random.uniform(0, self.backoff_base * (2**attempt))

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if self._http is not None:
            return self._request_with(self._http, method, path, **kwargs)
        with self._new_http() as http:
            return self._request_with(http, method, path, **kwargs)

    def _request_with(
        self, http: httpx.Client, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            outcome = self._attempt(http, method, path, **kwargs)
            if outcome.body is not None:
                return outcome.body
            error = outcome.error
            assert error is not None
            if not outcome.retryable or attempt >= self.max_retries:
                raise error
            wait = self._backoff(attempt)
            if outcome.retry_after is not None:
                # Never sooner than Didit asked; never longer than the cap.
                wait = max(wait, outcome.retry_after)
            if wait > self.max_retry_wait:
                if outcome.retry_after is None:
                    wait = self.max_retry_wait
                else:
                    raise error
            attempt += 1
            logger.warning(
                "Didit %s %s failed (%s); retry %d of %d in %.2fs",
                method,
                path,
                error.status_code or type(error).__name__,
                attempt,
                self.max_retries,
                wait,
            )
            self._sleep(wait)

    def _attempt(self, http: httpx.Client, method: str, path: str, **kwargs: Any) -> _Outcome:
        """One HTTP exchange, classified."""
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            return _Outcome(
                error=DiditConnectionError(f"Didit did not answer {method} {path} in time."),
                retryable=True,
            )
        except httpx.TransportError as exc:
            return _Outcome(
                error=DiditConnectionError(
                    f"Could not reach Didit for {method} {path} ({type(exc).__name__})."
                ),
                retryable=True,
            )

        status = response.status_code
        if 200 <= status < 300:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                return _Outcome(body=body)
            return _Outcome(
                error=DiditInvalidResponse(
                    f"Didit answered {method} {path} with {status} but not a JSON object.",
                    status_code=status,
                )
            )

        detail = _safe_detail(response)
        suffix = f": {detail}" if detail else ""
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429:
            return _Outcome(
                error=DiditRateLimited(
                    f"Didit rate-limited {method} {path} (429){suffix}",
                    retry_after=retry_after,
                    status_code=status,
                    detail=detail,
                ),
                retryable=True,
                retry_after=retry_after,
            )
        if status >= 500:
            return _Outcome(
                error=DiditServerError(
                    f"Didit failed {method} {path} ({status}){suffix}",
                    status_code=status,
                    detail=detail,
                ),
                retryable=status in RETRYABLE_STATUSES,
                retry_after=retry_after,
            )
        error_class = DiditNotFound if status == 404 else DiditClientError
        return _Outcome(
            error=error_class(
                f"Didit refused {method} {path} ({status}){suffix}",
                status_code=status,
                detail=detail,
            )
        )


@dataclass
class _Outcome:
    body: dict[str, Any] | None = None
    error: DiditAPIError | None = None
    retryable: bool = False
    # Didit's Retry-After, in seconds, when it sent one.
    retry_after: float | None = None
