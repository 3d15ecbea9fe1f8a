"""didit_rotate_keys: re-encrypt under the first key, idempotent, all-or-nothing on bad data.

(Encryption round trips and reading with an older key are in test_foundation.)
"""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from didit_channels.models import VerificationSession, WebhookDelivery

pytestmark = pytest.mark.django_db

DECISION = {"id_verification": {"first_name": "Mirela", "document_number": "RO-99311"}}
BODY = b'{"first_name": "Mirela"}'


def use_keys(settings, *keys: str) -> None:
    settings.DIDIT_CHANNELS = {**settings.DIDIT_CHANNELS, "ENCRYPTION_KEYS": list(keys)}


def stored_tokens(model, column: str) -> dict[int, str]:
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")  # noqa: S608
        return dict(cursor.fetchall())


def all_tokens() -> dict[str, dict[int, str]]:
    return {
        "decision": stored_tokens(VerificationSession, "decision"),
        "raw_body": stored_tokens(WebhookDelivery, "raw_body"),
    }


def run(*args) -> str:
    out = StringIO()
    call_command("didit_rotate_keys", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def old_key(settings) -> str:
    key = Fernet.generate_key().decode()
    use_keys(settings, key)
    return key


@pytest.fixture
def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def old_data(old_key):
    for number in range(5):
        VerificationSession.objects.create(session_id=f"s-{number}", decision=DECISION)
        WebhookDelivery.objects.create(raw_body=BODY, body_size=len(BODY), session_id="s-x")
    # A session without a decision is not touched (and not counted).
    VerificationSession.objects.create(session_id="s-empty")


def test_reencrypts_everything_under_the_first_key(settings, old_key, new_key, old_data):
    use_keys(settings, new_key, old_key)
    before = all_tokens()

    output = run()

    assert "didit_channels.VerificationSession.decision: 5 re-encrypted" in output
    assert "didit_channels.WebhookDelivery.raw_body: 5 re-encrypted" in output
    after = all_tokens()
    fresh = Fernet(new_key)
    for column in ("decision", "raw_body"):
        assert after[column].keys() == before[column].keys()
        for token in after[column].values():
            fresh.decrypt(token.encode())  # readable with the new key alone
    # The old key can now be dropped.
    use_keys(settings, new_key)
    assert [s.decision for s in VerificationSession.objects.filter(decision__isnull=False)] == [
        DECISION
    ] * 5
    assert {d.raw_body for d in WebhookDelivery.objects.all()} == {BODY}


def test_second_run_changes_nothing(settings, old_key, new_key, old_data):
    use_keys(settings, new_key, old_key)
    run()
    rotated = all_tokens()
    output = run()
    assert "0 re-encrypted, 5 already under the first key" in output
    assert all_tokens() == rotated


def test_works_across_small_batches(settings, old_key, new_key, old_data):
    use_keys(settings, new_key, old_key)
    output = run("--batch-size", "2")
    assert output.count("5 re-encrypted") == 2
    use_keys(settings, new_key)
    assert all(
        s.decision == DECISION for s in VerificationSession.objects.filter(decision__isnull=False)
    )


def test_dry_run_counts_and_changes_nothing(settings, old_key, new_key, old_data):
    use_keys(settings, new_key, old_key)
    before = all_tokens()
    output = run("--dry-run")
    assert "Dry run: 10 value(s) would be re-encrypted." in output
    assert all_tokens() == before


def test_an_unreadable_row_stops_everything_before_any_change(settings, old_key, new_key, old_data):
    lost_key = Fernet.generate_key().decode()
    use_keys(settings, lost_key)
    orphan = VerificationSession.objects.create(session_id="s-lost", decision=DECISION)
    use_keys(settings, new_key, old_key)
    before = all_tokens()

    with pytest.raises(CommandError) as excinfo:
        run()

    message = str(excinfo.value)
    assert f"didit_channels.VerificationSession.decision pk={orphan.pk}" in message
    assert "Nothing was changed" in message
    assert "RO-99311" not in message and "Mirela" not in message
    assert all_tokens() == before


def test_refuses_without_configured_keys(settings, old_data):
    use_keys(settings)
    settings.DEBUG = True
    with pytest.raises(CommandError, match="ENCRYPTION_KEYS"):
        run()


def test_malformed_key_is_a_command_error(settings, old_key):
    use_keys(settings, "not-a-fernet-key", old_key)
    with pytest.raises(CommandError, match="Fernet"):
        run()


def test_refuses_a_nonsense_batch_size(settings, old_key):
    with pytest.raises(CommandError):
        run("--batch-size", "0")
