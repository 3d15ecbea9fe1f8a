"""Shared fixtures.

Service-backed tests: ``redis_url`` gives a reachable Redis or skips (fails
under ``DIDIT_TEST_REQUIRE_SERVICES=1``); tests marked ``postgres`` run only
when ``DATABASE_URL`` points at PostgreSQL (``.ci/run`` runs the suite once
that way) and are skipped on SQLite.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlparse

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.utils import timezone

from didit_channels.testing import signed_webhook, status_payload

WEBHOOK_SECRET = "test-webhook-secret-" + "x" * 12
ENCRYPTION_KEY = Fernet.generate_key().decode()
REQUIRE_SERVICES = os.environ.get("DIDIT_TEST_REQUIRE_SERVICES") == "1"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 1):
            return True
    except OSError:
        return False


def service_unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (DIDIT_TEST_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if not _reachable(url):
        service_unavailable(f"Redis is not reachable at {url}")
    return url


def pytest_collection_modifyitems(config, items):
    engine = os.environ.get("DATABASE_URL", "sqlite")
    if engine.startswith(("postgres", "postgresql", "pgsql")):
        return
    skip = pytest.mark.skip(reason="PostgreSQL-only: runs when DATABASE_URL points at PostgreSQL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup, django_db_blocker):
    """Close PostgreSQL pools before the test database is dropped.

    Worker threads (the webhook fast path, the socket's database calls) hand
    their connections back to the pool, which keeps them open; PostgreSQL
    refuses to drop a database that has open sessions.
    """
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for wrapper in connections.all():
            if getattr(wrapper, "pool", None) is not None:
                wrapper.close_pool()


@pytest.fixture(autouse=True)
def _clear_cache():
    """DRF throttles count in the cache by user pk, and pks repeat across tests."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def apply_now(session_id: str, status: str, user=None, **extra):
    """Apply a change happening now through the one real path; returns its history row."""
    from didit_channels import state

    applied = state.apply_status_change(
        state.StatusChange(
            session_id=session_id,
            status=status,
            occurred_at=timezone.now(),
            dedupe_key=f"test:{uuid.uuid4()}",
            user=user,
            **extra,
        )
    )
    assert applied.result is state.ApplyResult.APPLIED
    return applied.event


def order_lock_waiters() -> int:
    """Transactions of this database waiting for the history-ordering advisory lock
    (PostgreSQL: ``state.EVENT_ORDER_LOCK_KEY``)."""
    from didit_channels import state

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND objid = %s AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())",
            [state.EVENT_ORDER_LOCK_KEY],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def fast_password_hashing(settings):
    """For modules that create users in every test: the default hasher costs ~0.25 s each.

    Not for users a separate server process must log in (its hashers are the default).
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def didit_test_settings(settings):
    settings.DIDIT_CHANNELS = {
        "WEBHOOK_SECRETS": [WEBHOOK_SECRET],
        "ENCRYPTION_KEYS": [ENCRYPTION_KEY],
    }
    return settings.DIDIT_CHANNELS


@pytest.fixture
def memory_layer(settings):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "didit_channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def redis_layer(settings, redis_url):
    """The real channels_redis layer, with a prefix of its own per test."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
        }
    }
    channel_layers.backends.clear()
    yield redis_url
    channel_layers.backends.clear()


@pytest.fixture(params=["memory", "redis"])
def any_layer(request):
    """Run the test on the in-memory layer and on real Redis."""
    return request.getfixturevalue(f"{request.param}_layer")


def _make_user(django_user_model, username: str, **extra):
    return django_user_model.objects.create_user(
        username=username, password=username, email=f"{username}@example.com", **extra
    )


@pytest.fixture
def alice(db, django_user_model):
    return _make_user(django_user_model, "alice")


@pytest.fixture
def bob(db, django_user_model):
    return _make_user(django_user_model, "bob")


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "admin")


@pytest.fixture
def verification_admin(db, django_user_model):
    """A plain user in the "Verification admins" group created by migration 0002.

    get_or_create: a ``transaction=True`` test flushes the tables afterwards,
    taking the migration's group with it.
    """
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name="Verification admins")
    group.permissions.add(
        Permission.objects.get(
            content_type__app_label="didit_channels", codename="view_all_sessions"
        )
    )
    user = _make_user(django_user_model, "desk")
    user.groups.add(group)
    return user


@pytest.fixture
def jwt_client():
    """``jwt_client(user)``: a DRF APIClient authenticated with a JWT Bearer token."""
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    def make(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
        return client

    return make


@pytest.fixture
def webhook_secret() -> str:
    return WEBHOOK_SECRET


@pytest.fixture
def post_webhook(client):
    """``post_webhook(payload, **signing)``: POST a correctly signed webhook.

    What the intake does after its commit (the ``webhook_received`` signal,
    publishing) runs as it would in production, also in tests whose database
    work is wrapped in a transaction that never commits.
    """
    from django.test import TestCase

    def post(payload, *, secret: str = WEBHOOK_SECRET, test_client=None, **signing):
        body, headers = signed_webhook(payload, secret, **signing)
        with TestCase.captureOnCommitCallbacks(execute=True):
            return (test_client or client).post(
                "/didit/webhook/", body, content_type="application/json", headers=headers
            )

    return post


@pytest.fixture
def make_payload():
    return status_payload


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"
