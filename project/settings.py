"""Settings of the demo site. Configured only from the environment (CONTRACT.md).

| variable               | default                                   |
|------------------------|-------------------------------------------|
| DATABASE_URL           | sqlite:///<repo>/db.sqlite3               |
| REDIS_URL              | unset: in-memory channel layer            |
| DIDIT_WEBHOOK_SECRET   | unset (comma-separated list for rotation) |
| DIDIT_ENCRYPTION_KEYS  | unset (comma-separated Fernet keys)       |
| DIDIT_API_KEY          | unset                                     |
| DIDIT_WORKFLOW_ID      | unset                                     |
| DIDIT_API_BASE_URL     | Didit's production API                    |
| DJANGO_SECRET_KEY      | a development key (only with DEBUG on)    |
| DJANGO_DEBUG           | 0                                         |
| DJANGO_ALLOWED_HOSTS   | 127.0.0.1,localhost                       |
| PORT                   | 8000 (read by the Makefile)               |
| DJANGO_TLS             | 0 (`make demo-tls` sets 1: served over    |
|                        | HTTPS; secure cookies, SSL redirect)      |

The DIDIT_* variables are read by didit_channels itself (its settings fall
back to them), so they do not appear below.
"""

import os
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_flag("DJANGO_DEBUG")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and not os.environ.get("PYTEST_VERSION"):
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for development).")
    SECRET_KEY = "django-insecure-didit-channels-demo-only"  # noqa: S105 - development only

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if host.strip()
]

# Served over HTTPS (`make demo-tls`: daphne's own TLS endpoint): cookies never
# travel over plain HTTP and a plain request is redirected (check
# didit_channels.W004). No HSTS: it ignores ports, so on localhost it would
# also force the plain `make demo` on port 8000 onto https.
if env_flag("DJANGO_TLS"):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "channels",
    "didit_channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent webhooks must not fail with "database is locked": WAL lets
    # readers run beside the writer, IMMEDIATE takes the write lock when the
    # transaction starts (no deadlocking lock upgrades), and writers wait for
    # each other up to the timeout instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not :memory:, so tests exercise the same locking as the demo;
    # one per test process, so parallel runs do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A connection pool (psycopg_pool): measured in bench/, opening a
    # connection per request cost more than the webhook's own queries, and a
    # burst of handshakes or webhooks ran PostgreSQL out of connections
    # ("too many clients already"). Django's persistent connections
    # (CONN_MAX_AGE) are not meant for ASGI; the pool is.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 20}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # Redis Pub/Sub, chosen on measurements (docs/readme/scale.md, bench/bench_layers.py):
    # 500 handshakes and 500 pushes at once complete with zero errors on two Redis
    # connections per process. The stock RedisChannelLayer answered HTTP 500 to 80%
    # of such a burst (redis-py's pool refuses a 101st concurrent call), silently
    # dropped pushes beyond its per-process capacity, and with redis-py 8 (5 s
    # default socket timeout) kills an idle consumer every 5 s. Pub/Sub delivers at
    # most once, which the app allows for: history is the truth and clients resume.
    # Pub/Sub channels ignore Redis database numbers, so the prefix carries it:
    # two sites on one Redis server must not hear each other.
    _redis_db = urlparse(REDIS_URL).path.strip("/") or "0"
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"didit.db{_redis_db}."},
        }
    }
else:
    # channels' in-memory layer, with its expiry sweep run once a second instead
    # of on every message (didit_channels/layers.py: 60% of the CPU of a fan-out).
    CHANNEL_LAYERS = {"default": {"BACKEND": "didit_channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = []  # the demo's accounts are admin/admin, alice/alice, bob/bob

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/didit/status/"
LOGOUT_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

# The app reads DIDIT_WEBHOOK_SECRET, DIDIT_ENCRYPTION_KEYS, DIDIT_API_KEY,
# DIDIT_WORKFLOW_ID and DIDIT_API_BASE_URL from the environment by itself.
DIDIT_CHANNELS: dict = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "didit_channels": {"handlers": ["console"], "level": "INFO"},
    },
}
