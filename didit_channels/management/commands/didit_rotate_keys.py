"""Re-encrypt stored identity data under the first key of ENCRYPTION_KEYS.

Rotation: put a new key first in ``DIDIT_CHANNELS["ENCRYPTION_KEYS"]`` (keep
the old ones after it), deploy, run this command, then remove the old keys.

The command first checks that every encrypted value can be decrypted with
the configured keys, and changes nothing if one cannot (it names the rows).
It then re-encrypts, in batches of short transactions, every value not
already under the first key. Running it again finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.db.models.functions import Cast

from ... import crypto
from ...conf import didit_settings
from ...fields import EncryptedTextBase


@dataclass
class Column:
    model: type[models.Model]
    field: str

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field}"


def encrypted_columns() -> list[Column]:
    """Every encrypted field of every installed model (host sites may add their own)."""
    return [
        Column(model, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextBase)
    ]


def _tokens(column: Column, batch_size: int, *, lock: bool = False) -> Iterator[list]:
    """Batches of (pk, ciphertext), read as text so nothing is decrypted by the ORM."""
    last_pk = None
    while True:
        queryset = column.model._default_manager.filter(**{f"{column.field}__isnull": False})
        if last_pk is not None:
            queryset = queryset.filter(pk__gt=last_pk)
        if lock:
            queryset = queryset.select_for_update()
        batch = list(
            queryset.annotate(_token=Cast(column.field, models.TextField()))
            .order_by("pk")
            .values_list("pk", "_token")[:batch_size]
        )
        if not batch:
            return
        yield batch
        last_pk = batch[-1][0]


def _is_current(primary: Fernet, token: str) -> bool:
    try:
        primary.decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        return False
    return True


class Command(BaseCommand):
    help = (
        "Re-encrypt stored decisions and raw webhook bodies under the first key of "
        'DIDIT_CHANNELS["ENCRYPTION_KEYS"]. Changes nothing if any value cannot be decrypted.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Rows re-encrypted per transaction (default 500).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check every value decrypts and count what would be re-encrypted.",
        )

    def handle(self, *args, batch_size: int, dry_run: bool, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if not didit_settings.ENCRYPTION_KEYS:
            raise CommandError(
                'DIDIT_CHANNELS["ENCRYPTION_KEYS"] is empty: data is encrypted with the '
                "development key derived from SECRET_KEY, and there is no key to rotate to. "
                "Configure a Fernet key first."
            )
        try:
            multi = crypto.get_fernet()
            primary = Fernet(didit_settings.ENCRYPTION_KEYS[0])
        except (ImproperlyConfigured, ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc

        columns = encrypted_columns()
        pending = self._check_all_decrypt(columns, multi, primary, batch_size)
        total_pending = sum(pending.values())
        if dry_run:
            for column in columns:
                self.stdout.write(f"{column.label}: {pending[column.label]} to re-encrypt")
            self.stdout.write(f"Dry run: {total_pending} value(s) would be re-encrypted.")
            return

        for column in columns:
            rotated, current = self._rotate(column, multi, primary, batch_size)
            self.stdout.write(
                f"{column.label}: {rotated} re-encrypted, {current} already under the first key"
            )
        self.stdout.write(self.style.SUCCESS("Every encrypted value is under the first key."))

    def _check_all_decrypt(self, columns, multi, primary, batch_size) -> dict[str, int]:
        """Count values not under the first key; refuse if any is unreadable."""
        pending: dict[str, int] = {}
        unreadable: list[str] = []
        for column in columns:
            pending[column.label] = 0
            for batch in _tokens(column, batch_size):
                for pk, token in batch:
                    if _is_current(primary, token):
                        continue
                    try:
                        multi.decrypt(token.encode("ascii"))
                    except (InvalidToken, UnicodeEncodeError):
                        unreadable.append(f"{column.label} pk={pk}")
                        continue
                    pending[column.label] += 1
        if unreadable:
            shown = ", ".join(unreadable[:20])
            more = f" and {len(unreadable) - 20} more" if len(unreadable) > 20 else ""
            raise CommandError(
                f"{len(unreadable)} stored value(s) cannot be decrypted with any configured "
                f"key: {shown}{more}. Nothing was changed. Add the key they were written "
                'with to DIDIT_CHANNELS["ENCRYPTION_KEYS"] (after the new one) and run again.'
            )
        return pending

    def _rotate(self, column: Column, multi, primary, batch_size: int) -> tuple[int, int]:
        rotated = current = 0
        manager = column.model._default_manager
        batches = _tokens(column, batch_size, lock=True)
        while True:
            # One transaction per batch; the rows stay locked while they are
            # rewritten, so a concurrent write is neither lost nor overwritten.
            with transaction.atomic():
                batch = next(batches, None)
                if batch is None:
                    return rotated, current
                for pk, token in batch:
                    if _is_current(primary, token):
                        current += 1
                        continue
                    try:
                        new_token = multi.rotate(token.encode("ascii")).decode("ascii")
                    except InvalidToken as exc:
                        # Written after the check with a key we do not hold.
                        raise CommandError(
                            f"{column.label} pk={pk} cannot be decrypted with any configured "
                            f"key; stopped after re-encrypting {rotated} value(s), all "
                            "still readable."
                        ) from exc
                    # Value(), not the raw string: the field would encrypt it again.
                    manager.filter(pk=pk).update(
                        **{column.field: models.Value(new_token, output_field=models.TextField())}
                    )
                    rotated += 1
