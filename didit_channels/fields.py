"""Model fields whose content is encrypted at rest (see ``crypto``).

The column holds a Fernet token as text. Encrypted columns cannot be filtered
on; everything the app queries by (status, user, session id) lives in plain
columns beside them.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from . import crypto


class EncryptedTextBase(models.TextField):
    def to_bytes(self, value: Any) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def from_bytes(self, data: bytes) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return crypto.encrypt(self.to_bytes(value))

    def from_db_value(self, value: str | None, expression, connection) -> Any:
        if value is None:
            return None
        return self.from_bytes(crypto.decrypt(value))

    def to_python(self, value: Any) -> Any:
        return value

    def get_lookup(self, lookup_name: str):
        # Ciphertext is randomised: any lookup but isnull would silently match nothing.
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)

    def value_to_string(self, obj: Any) -> str:
        return "<encrypted>"


class EncryptedJSONField(EncryptedTextBase):
    """A JSON document (dict/list) stored encrypted."""

    def to_bytes(self, value: Any) -> bytes:
        # ensure_ascii: anything json.loads produced is storable, lone
        # surrogates included (escaped as \ud800, which UTF-8 cannot encode).
        return json.dumps(value, cls=DjangoJSONEncoder).encode("ascii")

    def from_bytes(self, data: bytes) -> Any:
        return json.loads(data.decode("utf-8"))


class EncryptedBinaryField(EncryptedTextBase):
    """Raw bytes stored encrypted."""

    def to_bytes(self, value: Any) -> bytes:
        if isinstance(value, memoryview):
            return value.tobytes()
        if isinstance(value, str):
            return value.encode("utf-8")
        return bytes(value)

    def from_bytes(self, data: bytes) -> bytes:
        return data
