"""System checks (``manage.py check``), ids ``didit_channels.E0xx`` / ``W0xx``."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import didit_settings

INMEMORY_LAYERS = frozenset(
    {"channels.layers.InMemoryChannelLayer", "didit_channels.layers.InMemoryChannelLayer"}
)


@register(Tags.security)
def check_webhook_secret(app_configs=None, **kwargs):
    if didit_settings.WEBHOOK_SECRETS:
        return []
    return [
        Warning(
            "No Didit webhook secret is configured, so every webhook will be refused with 401.",
            hint='Set DIDIT_CHANNELS["WEBHOOK_SECRETS"] (or the DIDIT_WEBHOOK_SECRET '
            "environment variable) to the Webhook Secret Key from Didit's console "
            "(API & Webhooks). Several comma-separated secrets are accepted during rotation.",
            id="didit_channels.W003",
        )
    ]


@register()
def check_channel_layer(app_configs=None, **kwargs):
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    default = layers.get("default")
    if default is None:
        return [
            Error(
                "CHANNEL_LAYERS has no 'default' layer, so status changes cannot reach sockets.",
                hint="Configure channels_redis.core.RedisChannelLayer (see the README), or "
                "didit_channels.layers.InMemoryChannelLayer for development.",
                id="didit_channels.E001",
            )
        ]
    if default.get("BACKEND") in INMEMORY_LAYERS and not settings.DEBUG:
        return [
            Warning(
                "The in-memory channel layer is in use with DEBUG off: a status change reaches "
                "only sockets connected to the process that received the webhook.",
                hint="Use channels_redis (set REDIS_URL in the demo site) when running more "
                "than one server process.",
                id="didit_channels.W001",
            )
        ]
    return []


@register(Tags.security)
def check_allowed_hosts_wildcard(app_configs=None, **kwargs):
    if "*" not in settings.ALLOWED_HOSTS or didit_settings.ALLOWED_ORIGINS is not None:
        return []
    return [
        Warning(
            "ALLOWED_HOSTS contains '*'. Channels' AllowedHostsOriginValidator would accept "
            "sockets from every origin; didit_channels ignores '*' for origin checks, so "
            "browsers on your own domain are refused until origins are listed.",
            hint='Set DIDIT_CHANNELS["ALLOWED_ORIGINS"] to your site\'s origins, e.g. '
            '["https://example.com"], or list your hosts in ALLOWED_HOSTS.',
            id="didit_channels.W002",
        )
    ]


@register(Tags.security)
def check_encryption_keys(app_configs=None, **kwargs):
    if didit_settings.ENCRYPTION_KEYS or settings.DEBUG:
        return []
    return [
        Error(
            "No encryption key is configured for identity data at rest; decisions would be "
            "encrypted with a key derived from SECRET_KEY.",
            hint='Set DIDIT_CHANNELS["ENCRYPTION_KEYS"] (the demo reads DIDIT_ENCRYPTION_KEYS) '
            'to one or more Fernet keys: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"',
            id="didit_channels.E003",
        )
    ]


@register()
def check_encryption_keys_valid(app_configs=None, **kwargs):
    from cryptography.fernet import Fernet

    for position, key in enumerate(didit_settings.ENCRYPTION_KEYS):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return [
                Error(
                    f'DIDIT_CHANNELS["ENCRYPTION_KEYS"] entry {position} is not a Fernet key.',
                    hint="A Fernet key is 32 url-safe base64-encoded bytes; generate one with "
                    "cryptography.fernet.Fernet.generate_key().",
                    id="didit_channels.E002",
                )
            ]
    return []


@register(Tags.security)
def check_secure_transport(app_configs=None, **kwargs):
    """W004: with DEBUG off, the cookies and the page must not travel over plain HTTP.

    Cookies: the session cookie mints socket tickets and reads decisions, so one
    plain-HTTP request (a typed http:// URL, an injected link) must not leak it.
    Page: a page served over http:// opens ws:// and sends its ticket in the
    clear; SECURE_SSL_REDIRECT or HSTS keeps browsers on https. Either counts,
    as a TLS-terminating proxy often does one of them for the site.
    """
    if settings.DEBUG:
        return []
    missing = [
        name
        for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")
        if not getattr(settings, name, False)
    ]
    if not getattr(settings, "SECURE_SSL_REDIRECT", False) and not getattr(
        settings, "SECURE_HSTS_SECONDS", 0
    ):
        missing.append("SECURE_SSL_REDIRECT or SECURE_HSTS_SECONDS")
    if not missing:
        return []
    return [
        Warning(
            "DEBUG is off but HTTPS is not enforced: "
            + ", ".join(missing)
            + " not set. Session cookies, socket tickets and identity decisions could "
            "travel over plain HTTP.",
            hint="Serve the site over HTTPS and set SESSION_COOKIE_SECURE = True, "
            "CSRF_COOKIE_SECURE = True and SECURE_SSL_REDIRECT = True or "
            "SECURE_HSTS_SECONDS (behind a TLS-terminating proxy, also "
            "SECURE_PROXY_SSL_HEADER). The demo site does this with DJANGO_TLS=1.",
            id="didit_channels.W004",
        )
    ]


PER_PROCESS_CACHES = frozenset({"django.core.cache.backends.locmem.LocMemCache"})
NO_CACHES = frozenset({"django.core.cache.backends.dummy.DummyCache"})


@register(Tags.security)
def check_ticket_throttle_cache(app_configs=None, **kwargs):
    """W005: with DEBUG off, the ticket throttle must count somewhere every process sees.

    DRF's throttles count in the ``default`` cache. A ``DummyCache`` never
    counts, so the throttle never refuses; a ``LocMemCache`` counts per
    process, so with a shared channel layer (several processes) each allows
    the full rate.
    """
    rate = didit_settings.TICKET_THROTTLE_RATE
    if settings.DEBUG or not rate:
        return []
    backend = (
        (getattr(settings, "CACHES", {}) or {})
        .get("default", {})
        .get("BACKEND", "django.core.cache.backends.locmem.LocMemCache")
    )
    layer = ((getattr(settings, "CHANNEL_LAYERS", {}) or {}).get("default") or {}).get("BACKEND")
    if backend in NO_CACHES:
        problem = "never counts, so the ticket throttle never refuses a request"
    elif backend in PER_PROCESS_CACHES and layer is not None and layer not in INMEMORY_LAYERS:
        problem = (
            "counts per process, so with several server processes each allows the whole "
            "TICKET_THROTTLE_RATE"
        )
    else:
        return []
    return [
        Warning(
            f"The default cache ({backend.rsplit('.', 1)[-1]}) {problem} ({rate} per user).",
            hint="Point CACHES['default'] at a cache every process shares, e.g. "
            "django.core.cache.backends.redis.RedisCache on your Redis, or set "
            'DIDIT_CHANNELS["TICKET_THROTTLE_RATE"] = None to say you throttle elsewhere.',
            id="didit_channels.W005",
        )
    ]
