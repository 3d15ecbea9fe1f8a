"""Refuse sockets opened from pages of other sites, before accept (HTTP 403).

Which origins are allowed:

* ``DIDIT_CHANNELS["ALLOWED_ORIGINS"]``, when set: a list of exact origins,
  ``"https://example.com"`` or ``"http://localhost:8000"`` (scheme, host and
  port; the default port may be left out). Nothing else; ``"*"`` is not a
  wildcard here.
* Otherwise, ``ALLOWED_HOSTS``: an origin whose host matches an entry, with
  Django's rules (``".example.com"`` covers subdomains), on any scheme and
  port. ``"*"`` never counts: a site that accepts every Host header has not
  said which pages may open its sockets (check ``didit_channels.W002``).
  With ``DEBUG`` on and ``ALLOWED_HOSTS`` empty, localhost, as Django does.

A handshake without an ``Origin`` header is let through. Browsers always send
one on WebSocket handshakes, so a missing header means a non-browser client
(a script, a server, a mobile app), which cross-site socket hijacking cannot
come from. Such a client still needs a ticket, and tickets are only handed
out over the authenticated API. ``Origin: null`` (sandboxed frames, files) is
refused like any other origin not listed.

The refusal closes the handshake before accepting it, which a browser sees as
HTTP 403 (no close code reaches a page before accept).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain

from ..conf import didit_settings

logger = logging.getLogger("didit_channels.live.origin")

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
DEBUG_HOSTS = ["localhost", "127.0.0.1", "[::1]"]


def _split_origin(value: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an origin, or None when it is not a usable origin."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS.get(parts.scheme)


def origin_allowed(origin: str | None) -> bool:
    """Whether a handshake with this ``Origin`` header (None: absent) may proceed."""
    if origin is None:
        return True
    parsed = _split_origin(origin)
    if parsed is None:
        return False
    explicit = didit_settings.ALLOWED_ORIGINS
    if explicit is not None:
        return any(parsed == _split_origin(entry) for entry in explicit)
    hosts = [host for host in settings.ALLOWED_HOSTS if host != "*"]
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        hosts = DEBUG_HOSTS
    host = parsed[1]
    if ":" in host:  # IPv6 literals appear bracketed in ALLOWED_HOSTS
        host = f"[{host}]"
    return any(is_same_domain(host, pattern.lower()) for pattern in hosts)


def _origin_header(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"origin":
            return value.decode("latin1")
    return None


class OriginValidator:
    """ASGI middleware for WebSocket routes: refuse disallowed origins before accept."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("didit_channels' OriginValidator guards WebSocket routes only.")
        origin = _origin_header(scope)
        if origin_allowed(origin):
            return await self.application(scope, receive, send)
        logger.warning(
            "Refused a WebSocket handshake from origin %r; list it in "
            'DIDIT_CHANNELS["ALLOWED_ORIGINS"] (or ALLOWED_HOSTS) if it is yours.',
            origin[:200],
        )
        return await WebsocketDenier()(scope, receive, send)
