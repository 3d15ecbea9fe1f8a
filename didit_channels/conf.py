"""The app's settings: one ``DIDIT_CHANNELS`` dict, read lazily.

``didit_settings.WEBHOOK_SECRETS`` looks the name up in ``settings.DIDIT_CHANNELS``
first, then in the environment variable the contract names (for the handful of
secrets a deployment passes that way), then in ``DEFAULTS``. Values are cached
and the cache is dropped on ``setting_changed``, so ``override_settings`` works
in tests.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "DIDIT_CHANNELS"
MIB = 1024 * 1024

DEFAULTS: dict[str, Any] = {
    # --- webhook intake -------------------------------------------------
    # Secrets Didit signs webhooks with; several may be valid during rotation.
    "WEBHOOK_SECRETS": [],
    # Requests whose X-Timestamp is further than this from now are refused.
    "WEBHOOK_TOLERANCE_SECONDS": 300,
    # Bodies over this many bytes are refused with 413 without being read.
    "WEBHOOK_MAX_BODY_BYTES": MIB,
    # X-Signature-Simple signs only the envelope; refused unless enabled, and
    # then the decision is fetched from the Didit API before it is trusted.
    "WEBHOOK_ALLOW_SIMPLE_SIGNATURE": False,
    # Dotted path of ``callable(payload: dict) -> user | None``.
    "USER_RESOLVER": "didit_channels.users.resolve_user_from_vendor_data",
    # On PostgreSQL, a verified webhook is recorded and applied by one call to a
    # database function (migration 0003; state_postgres.py) instead of twelve
    # statements. False: the Python path every other database takes.
    "WEBHOOK_ONE_ROUND_TRIP": True,
    # --- Didit API ------------------------------------------------------
    "API_KEY": "",
    "WORKFLOW_ID": "",
    "API_BASE_URL": "https://verification.didit.me",
    "API_TIMEOUT_SECONDS": 10.0,
    "API_MAX_RETRIES": 3,
    # Longest wait between retries (429 Retry-After or backoff). A Retry-After
    # above it is not waited out: the call fails at once with DiditRateLimited.
    "API_RETRY_MAX_WAIT_SECONDS": 5.0,
    # Absolute URL Didit sends the user back to; None builds it from the request.
    "CALLBACK_URL": None,
    # Sessions in a non-final status older than this are re-fetched by didit_reconcile.
    "RECONCILE_AFTER_SECONDS": 3600,
    # --- data at rest ---------------------------------------------------
    # Fernet keys; the first encrypts, all decrypt (rotation).
    "ENCRYPTION_KEYS": [],
    "DELIVERY_RETENTION_DAYS": 30,
    "DECISION_RETENTION_DAYS": 365,
    # --- live channel ---------------------------------------------------
    "TICKET_TTL_SECONDS": 30,
    "TICKET_BIND_CLIENT_IP": False,
    "TICKET_THROTTLE_RATE": "30/min",
    "MAX_SOCKETS_PER_USER": 10,
    "MAX_CONNECTION_AGE_SECONDS": 3600,
    # Logging out of a Django login session closes the sockets its tickets
    # opened, with 4003 "signed out" (live/logout.py); other logins' stay open.
    "CLOSE_SOCKETS_ON_LOGOUT": True,
    # A change of a user's password hash closes all their sockets with 1001
    # "credentials changed" and deletes their unspent tickets; clients reconnect
    # with a new ticket, which only still-valid credentials get (live/credentials.py).
    "CLOSE_SOCKETS_ON_PASSWORD_CHANGE": True,
    # The longest a channel-layer call (a push, a socket joining its groups)
    # may wait before it counts as failed: a stalled Redis must not hold a
    # webhook's answer or a handshake for as long as it stalls. None: no bound.
    "LAYER_TIMEOUT_SECONDS": 2.0,
    "MAX_CLIENT_FRAME_BYTES": 4096,
    # Client frames a socket may send: a burst of this many, then this many per
    # second; beyond it a frame is answered {"type": "error", "code":
    # "rate_limited"} and not acted on (a resume reads the database). None: no limit.
    "CLIENT_FRAME_BURST": 20,
    "CLIENT_FRAMES_PER_SECOND": 2.0,
    # Bytes the server may hold for a client that is not reading (beyond the
    # kernel's buffers); past it the socket is closed (1013) rather than the
    # process's memory growing with every push (live/transport.py).
    "MAX_SOCKET_BACKLOG_BYTES": MIB,
    # Each server process checks the history this often for events a socket was
    # not pushed (a Redis restart, a crash between commit and publish) and
    # sends them (live/catchup.py); 0 turns the check off.
    "CATCH_UP_SECONDS": 5,
    "ADMIN_SNAPSHOT_LIMIT": 100,
    # Origins allowed to open sockets ("https://example.com"). None derives them
    # from ALLOWED_HOSTS, where "*" never counts as allowing every origin.
    "ALLOWED_ORIGINS": None,
    "GROUP_PREFIX": "didit",
}

# Settings a deployment may pass through the environment (see CONTRACT.md).
ENVIRONMENT_FALLBACKS: dict[str, str] = {
    "WEBHOOK_SECRETS": "DIDIT_WEBHOOK_SECRET",
    "ENCRYPTION_KEYS": "DIDIT_ENCRYPTION_KEYS",
    "API_KEY": "DIDIT_API_KEY",
    "WORKFLOW_ID": "DIDIT_WORKFLOW_ID",
    "API_BASE_URL": "DIDIT_API_BASE_URL",
}

LIST_SETTINGS = {"WEBHOOK_SECRETS", "ENCRYPTION_KEYS"}


def _split(value: str | list[str] | tuple[str, ...]) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value if str(part)]


class DiditSettings:
    """Attribute access to the app's settings, with defaults and env fallbacks."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, SETTING_NAME, {}) or {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Invalid {SETTING_NAME} setting: {name!r}")
        if name in self._cache:
            return self._cache[name]
        user = self.user_settings
        if name in user:
            value = user[name]
        elif name in ENVIRONMENT_FALLBACKS and os.environ.get(ENVIRONMENT_FALLBACKS[name]):
            value = os.environ[ENVIRONMENT_FALLBACKS[name]]
        else:
            value = DEFAULTS[name]
        if name in LIST_SETTINGS:
            value = _split(value)
        self._cache[name] = value
        return value

    def reload(self) -> None:
        self._cache.clear()


didit_settings = DiditSettings()


@receiver(setting_changed)
def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        didit_settings.reload()
