"""The installable app: settings, checks, migrations, admin, demo accounts, packaging."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from didit_channels import checks
from didit_channels.conf import DEFAULTS, didit_settings
from didit_channels.models import VerificationSession, WebhookDelivery

ROOT = Path(__file__).resolve().parent.parent


class TestSettings:
    def test_defaults_apply_when_unset(self, settings):
        settings.DIDIT_CHANNELS = {}
        assert didit_settings.TICKET_TTL_SECONDS == DEFAULTS["TICKET_TTL_SECONDS"] == 30
        assert didit_settings.WEBHOOK_MAX_BODY_BYTES == 1024 * 1024

    def test_override_settings_is_seen(self):
        with override_settings(DIDIT_CHANNELS={"TICKET_TTL_SECONDS": 5}):
            assert didit_settings.TICKET_TTL_SECONDS == 5
        assert didit_settings.TICKET_TTL_SECONDS == 30

    def test_environment_fallback_splits_lists(self, settings, monkeypatch):
        settings.DIDIT_CHANNELS = {}
        monkeypatch.setenv("DIDIT_WEBHOOK_SECRET", "old-secret, new-secret")
        didit_settings.reload()
        assert didit_settings.WEBHOOK_SECRETS == ["old-secret", "new-secret"]

    def test_explicit_setting_wins_over_environment(self, settings, monkeypatch):
        monkeypatch.setenv("DIDIT_API_KEY", "from-env")
        settings.DIDIT_CHANNELS = {"API_KEY": "from-settings"}
        assert didit_settings.API_KEY == "from-settings"

    def test_unknown_setting_is_an_attribute_error(self):
        with pytest.raises(AttributeError, match="Invalid DIDIT_CHANNELS setting"):
            didit_settings.NO_SUCH_SETTING  # noqa: B018


class TestSystemChecks:
    def ids(self, results):
        return {result.id for result in results}

    def test_missing_webhook_secret_warns(self, settings, monkeypatch):
        monkeypatch.delenv("DIDIT_WEBHOOK_SECRET", raising=False)
        settings.DIDIT_CHANNELS = {}
        assert self.ids(checks.check_webhook_secret()) == {"didit_channels.W003"}

    def test_configured_secret_passes(self):
        assert checks.check_webhook_secret() == []

    def test_inmemory_layer_without_debug_warns(self, settings, memory_layer):
        settings.DEBUG = False
        assert self.ids(checks.check_channel_layer()) == {"didit_channels.W001"}
        settings.DEBUG = True
        assert checks.check_channel_layer() == []

    def test_missing_channel_layer_is_an_error(self, settings):
        settings.CHANNEL_LAYERS = {}
        assert self.ids(checks.check_channel_layer()) == {"didit_channels.E001"}

    @pytest.mark.parametrize(
        ("cache", "layer", "warns"),
        [
            ("dummy.DummyCache", "didit_channels.layers.InMemoryChannelLayer", True),
            ("dummy.DummyCache", "channels_redis.pubsub.RedisPubSubChannelLayer", True),
            ("locmem.LocMemCache", "channels_redis.pubsub.RedisPubSubChannelLayer", True),
            ("locmem.LocMemCache", "channels_redis.core.RedisChannelLayer", True),
            ("locmem.LocMemCache", "didit_channels.layers.InMemoryChannelLayer", False),
            ("redis.RedisCache", "channels_redis.pubsub.RedisPubSubChannelLayer", False),
            ("db.DatabaseCache", "channels_redis.core.RedisChannelLayer", False),
        ],
    )
    def test_a_ticket_throttle_that_cannot_count_across_processes_warns(
        self, settings, cache, layer, warns
    ):
        settings.DEBUG = False
        settings.CACHES = {"default": {"BACKEND": f"django.core.cache.backends.{cache}"}}
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": layer}}
        found = self.ids(checks.check_ticket_throttle_cache())
        assert found == ({"didit_channels.W005"} if warns else set())
        registered = {message.id for message in run_checks(tags=[Tags.security])}
        assert ("didit_channels.W005" in registered) is warns
        # Quiet with DEBUG on, and when the site throttles elsewhere.
        settings.DEBUG = True
        assert checks.check_ticket_throttle_cache() == []
        settings.DEBUG = False
        settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "TICKET_THROTTLE_RATE": None}
        assert checks.check_ticket_throttle_cache() == []

    def test_wildcard_allowed_hosts_warns(self, settings):
        settings.ALLOWED_HOSTS = ["*"]
        assert self.ids(checks.check_allowed_hosts_wildcard()) == {"didit_channels.W002"}
        settings.ALLOWED_HOSTS = ["example.com"]
        assert checks.check_allowed_hosts_wildcard() == []

    def test_malformed_encryption_key_is_an_error(self, settings):
        settings.DIDIT_CHANNELS = {"ENCRYPTION_KEYS": ["not-a-key"]}
        assert self.ids(checks.check_encryption_keys_valid()) == {"didit_channels.E002"}

    def test_no_encryption_key_in_production_is_an_error(self, settings, monkeypatch):
        monkeypatch.delenv("DIDIT_ENCRYPTION_KEYS", raising=False)
        settings.DIDIT_CHANNELS = {}
        settings.DEBUG = False
        assert self.ids(checks.check_encryption_keys()) == {"didit_channels.E003"}
        settings.DEBUG = True
        assert checks.check_encryption_keys() == []

    def test_checks_are_registered(self):
        from django.core.checks.registry import registry

        names = {check.__name__ for check in registry.get_checks()}
        assert {"check_webhook_secret", "check_channel_layer", "check_encryption_keys"} <= names


@pytest.mark.django_db
class TestMigrations:
    def test_group_verification_admins_holds_view_all_sessions(self):
        from django.contrib.auth.models import Group

        group = Group.objects.get(name="Verification admins")
        codenames = set(group.permissions.values_list("codename", flat=True))
        assert codenames == {"view_all_sessions"}

    def test_group_member_gets_the_admin_permission(self, verification_admin):
        assert verification_admin.has_perm("didit_channels.view_all_sessions")

    def test_no_pending_migrations(self):
        call_command("makemigrations", "didit_channels", "--check", "--dry-run", verbosity=0)

    def test_migrations_seed_no_user(self, django_user_model):
        assert django_user_model.objects.count() == 0


@pytest.mark.django_db
class TestSeedDemo:
    def test_creates_the_contract_accounts(self, settings, django_user_model):
        settings.DEBUG = True
        call_command("didit_seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
        admin = django_user_model.objects.get(username="admin")
        assert admin.is_superuser and admin.check_password("admin")
        assert admin.has_perm("didit_channels.view_all_sessions")
        for name in ("alice", "bob"):
            user = django_user_model.objects.get(username=name)
            assert user.check_password(name) and not user.is_superuser
            assert not user.has_perm("didit_channels.view_all_sessions")

    def test_is_idempotent(self, settings, django_user_model):
        settings.DEBUG = True
        call_command("didit_seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
        call_command("didit_seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
        assert django_user_model.objects.count() == 3

    def test_refuses_without_debug(self, settings, django_user_model):
        settings.DEBUG = False
        with pytest.raises(CommandError, match="DEBUG"):
            call_command("didit_seed_demo")
        assert django_user_model.objects.count() == 0


@pytest.mark.django_db
class TestEncryptionAtRest:
    DECISION = {"id_verification": {"first_name": "Zoë", "document_number": "X1234567"}}

    def raw_column(self, table, column, pk):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
            return cursor.fetchone()[0]

    def test_decision_is_stored_encrypted_and_reads_back(self):
        session = VerificationSession.objects.create(session_id="s-enc", decision=self.DECISION)
        stored = self.raw_column(VerificationSession._meta.db_table, "decision", session.pk)
        # Fernet tokens are base64; the plaintext's words would show up verbatim if unencrypted.
        assert "X1234567" not in stored and "document_number" not in stored
        assert VerificationSession.objects.get(pk=session.pk).decision == self.DECISION

    def test_raw_body_is_stored_encrypted(self):
        delivery = WebhookDelivery.objects.create(raw_body=b'{"name": "Zo\xc3\xab"}', body_size=16)
        stored = self.raw_column(WebhookDelivery._meta.db_table, "raw_body", delivery.pk)
        assert '"name"' not in stored
        assert WebhookDelivery.objects.get(pk=delivery.pk).raw_body == b'{"name": "Zo\xc3\xab"}'

    def test_old_key_still_decrypts_after_rotation(self, settings):
        from cryptography.fernet import Fernet

        old = settings.DIDIT_CHANNELS["ENCRYPTION_KEYS"][0]
        session = VerificationSession.objects.create(session_id="s-rot", decision=self.DECISION)
        settings.DIDIT_CHANNELS = {"ENCRYPTION_KEYS": [Fernet.generate_key().decode(), old]}
        assert VerificationSession.objects.get(pk=session.pk).decision == self.DECISION

    def test_unknown_key_gives_a_helpful_error(self, settings):
        from cryptography.fernet import Fernet

        from didit_channels.crypto import DecryptionError

        session = VerificationSession.objects.create(session_id="s-lost", decision=self.DECISION)
        settings.DIDIT_CHANNELS = {"ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
        with pytest.raises(DecryptionError, match="didit_rotate_keys"):
            VerificationSession.objects.get(pk=session.pk)

    def test_filtering_on_ciphertext_is_refused(self):
        from django.core.exceptions import FieldError

        with pytest.raises(FieldError):
            list(VerificationSession.objects.filter(decision__contains="X"))


@pytest.mark.django_db
class TestAdmin:
    def test_session_pages_render_for_a_superuser(self, client, superuser, alice):
        session = VerificationSession.objects.create(
            session_id="s-admin", user=alice, status="In Review", decision={"x": "secret-value"}
        )
        client.force_login(superuser)
        listing = client.get("/admin/didit_channels/verificationsession/?status=In+Review")
        assert listing.status_code == 200 and b"s-admin" in listing.content
        found = client.get("/admin/didit_channels/verificationsession/?q=alice")
        assert b"s-admin" in found.content
        detail = client.get(f"/admin/didit_channels/verificationsession/{session.pk}/change/")
        assert detail.status_code == 200
        assert b"secret-value" not in detail.content

    @pytest.mark.parametrize(
        "model", ["verificationsession", "statusevent", "webhookdelivery", "decisionaccess"]
    )
    def test_audit_data_is_read_only(self, client, superuser, model):
        client.force_login(superuser)
        assert client.get(f"/admin/didit_channels/{model}/").status_code == 200
        assert client.get(f"/admin/didit_channels/{model}/add/").status_code == 403


@pytest.mark.slow
def test_wheel_carries_migrations_templates_and_static(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("didit_channels-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "didit_channels/migrations/0001_initial.py" in names
    assert "didit_channels/migrations/0002_verification_admins_group.py" in names
    assert any(name.startswith("didit_channels/static/didit_channels/") for name in names)
    assert any(name.startswith("didit_channels/templates/didit_channels/") for name in names)
    assert not any(name.startswith(("project/", "tests/")) for name in names)


@pytest.mark.django_db
def test_an_encrypted_decision_keeps_what_json_can_hold_even_lone_surrogates():
    # json.loads accepts "\ud800" escapes; UTF-8 cannot encode the result.
    decision = json.loads('{"name": "Zo\\u00eb \\ud800", "\\ud800": [97.0, 97.3]}')
    session = VerificationSession.objects.create(session_id="s-surrogate", decision=decision)
    assert VerificationSession.objects.get(pk=session.pk).decision == decision
