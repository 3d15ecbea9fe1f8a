"""Encryption of identity data at rest (decisions, raw webhook bodies).

Keys come from ``DIDIT_CHANNELS["ENCRYPTION_KEYS"]`` (the demo reads
``DIDIT_ENCRYPTION_KEYS``): Fernet keys, the first encrypts and every key
decrypts, so a new key is put first and ``didit_rotate_keys`` re-encrypts.

With no key configured and DEBUG on, a key is derived from SECRET_KEY so a
development checkout works out of the box; check ``didit_channels.E003`` makes
that an error in production, where changing SECRET_KEY would make every stored
decision unreadable.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .conf import didit_settings


class DecryptionError(ImproperlyConfigured):
    """Stored data could not be decrypted with any configured key."""


def _derived_development_key() -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"didit_channels",
        info=b"didit_channels.encryption.development",
    )
    return base64.urlsafe_b64encode(hkdf.derive(settings.SECRET_KEY.encode()))


@functools.cache
def get_fernet() -> MultiFernet:
    keys = didit_settings.ENCRYPTION_KEYS
    try:
        fernets = [Fernet(key) for key in keys]
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            'DIDIT_CHANNELS["ENCRYPTION_KEYS"] holds a value that is not a Fernet key '
            "(32 url-safe base64-encoded bytes). Generate one with "
            "cryptography.fernet.Fernet.generate_key()."
        ) from exc
    if not fernets:
        fernets = [Fernet(_derived_development_key())]
    return MultiFernet(fernets)


def encrypt(data: bytes) -> str:
    return get_fernet().encrypt(data).decode("ascii")


def decrypt(token: str) -> bytes:
    try:
        return get_fernet().decrypt(token.encode("ascii"))
    except InvalidToken as exc:
        raise DecryptionError(
            "Stored identity data could not be decrypted with any key in "
            'DIDIT_CHANNELS["ENCRYPTION_KEYS"]. Was a key removed before '
            "`manage.py didit_rotate_keys` re-encrypted the data?"
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt ``token`` under the first configured key."""
    try:
        return get_fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise DecryptionError("Stored data could not be decrypted for rotation.") from exc


@receiver(setting_changed)
def _reset_keys(*, setting: str, **kwargs) -> None:
    if setting in {"DIDIT_CHANNELS", "SECRET_KEY"}:
        get_fernet.cache_clear()
