"""didit_channels.W004: with DEBUG off, HTTPS must be enforced for cookies and pages."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from unittest import mock

import pytest
from django.core import checks as django_checks

from didit_channels import checks

ROOT = Path(__file__).resolve().parent.parent
SECURE = {
    "DEBUG": False,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_SSL_REDIRECT": True,
    "SECURE_HSTS_SECONDS": 0,
}


def w004(settings, **overrides) -> list:
    for name, value in {**SECURE, **overrides}.items():
        setattr(settings, name, value)
    return [m for m in checks.check_secure_transport() if m.id == "didit_channels.W004"]


def test_secure_settings_pass(settings):
    assert w004(settings) == []


def test_hsts_instead_of_the_redirect_is_enough(settings):
    assert w004(settings, SECURE_SSL_REDIRECT=False, SECURE_HSTS_SECONDS=31536000) == []


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"SESSION_COOKIE_SECURE": False}, "SESSION_COOKIE_SECURE"),
        ({"CSRF_COOKIE_SECURE": False}, "CSRF_COOKIE_SECURE"),
        ({"SECURE_SSL_REDIRECT": False}, "SECURE_SSL_REDIRECT or SECURE_HSTS_SECONDS"),
    ],
)
def test_each_missing_setting_warns_and_is_named(settings, overrides, named):
    (warning,) = w004(settings, **overrides)
    assert warning.level == django_checks.WARNING
    assert named in warning.msg
    assert "SESSION_COOKIE_SECURE" in warning.hint


def test_django_defaults_with_debug_off_name_all_three(settings):
    (warning,) = w004(
        settings,
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        SECURE_SSL_REDIRECT=False,
    )
    for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT"):
        assert name in warning.msg


def test_debug_on_is_silent(settings):
    assert w004(settings, DEBUG=True, SESSION_COOKIE_SECURE=False, SECURE_SSL_REDIRECT=False) == []


def test_registered_with_the_security_tag(settings):
    for name, value in {**SECURE, "CSRF_COOKIE_SECURE": False}.items():
        setattr(settings, name, value)
    found = django_checks.run_checks(tags=[django_checks.Tags.security])
    assert "didit_channels.W004" in {message.id for message in found}


def demo_settings(env: dict[str, str]):
    """The demo site's settings module as computed from ``env``."""
    spec = importlib.util.spec_from_file_location("_demo_settings", ROOT / "project/settings.py")
    module = importlib.util.module_from_spec(spec)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        spec.loader.exec_module(module)
    return module


def test_the_demo_with_tls_satisfies_the_check(settings):
    site = demo_settings({"DJANGO_TLS": "1", "DJANGO_SECRET_KEY": "x" * 50})
    overrides = {
        name: getattr(site, name, False)
        for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT")
    }
    assert w004(settings, **overrides) == []


def test_the_plain_demo_without_debug_warns(settings):
    site = demo_settings({"DJANGO_SECRET_KEY": "x" * 50})
    overrides = {
        name: getattr(site, name, False)
        for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT")
    }
    assert len(w004(settings, **overrides)) == 1
