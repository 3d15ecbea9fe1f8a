"""Sign a webhook with the configured secret and POST it: a local stand-in for
the "Try Webhook" button of Didit's console.

    manage.py didit_send_webhook http://127.0.0.1:8000/didit/webhook/ \\
        --status Approved --vendor-data 2

By default it sends a ``status.updated`` body for a new random session, signed
with X-Signature-V2 and X-Signature by the first secret in
``DIDIT_CHANNELS["WEBHOOK_SECRETS"]`` (``DIDIT_WEBHOOK_SECRET``). ``--payload``
sends your own JSON object instead. The secret and the signatures are never
printed.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import didit_settings
from ...testing import signed_webhook, status_payload

SCHEMES = ("v2", "raw", "simple")


def _schemes(value: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    if not chosen or any(scheme not in SCHEMES for scheme in chosen):
        raise ValueError(value)
    return chosen


class Command(BaseCommand):
    help = "Sign a Didit-style webhook with the configured secret and POST it to URL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="Where to POST, e.g. http://127.0.0.1:8000/didit/webhook/")
        parser.add_argument("--session-id", help="Default: a new random UUID.")
        parser.add_argument("--status", default="Approved", help='Default: "Approved".')
        parser.add_argument("--vendor-data", help="The user's primary key, by default.")
        parser.add_argument("--webhook-type", default="status.updated")
        parser.add_argument("--event-id", help="Didit's event id (dedupe key); default none.")
        parser.add_argument("--timestamp", type=int, help="Unix seconds; default now.")
        parser.add_argument(
            "--payload",
            help="A JSON object to send as is (or @path/to/file.json); overrides the fields above.",
        )
        parser.add_argument("--secret", help="Sign with this secret instead of the configured one.")
        parser.add_argument(
            "--signatures",
            type=_schemes,
            default=("v2", "raw"),
            metavar="LIST",
            help="Comma-separated: v2, raw, simple (default: v2,raw).",
        )
        parser.add_argument("--timeout", type=float, default=10.0, help="Seconds (default 10).")

    def handle(self, *args, **options) -> None:
        secret = options["secret"] or next(iter(didit_settings.WEBHOOK_SECRETS), "")
        if not secret:
            raise CommandError(
                'No webhook secret: set DIDIT_CHANNELS["WEBHOOK_SECRETS"] (or '
                "DIDIT_WEBHOOK_SECRET), or pass --secret."
            )
        payload = self._payload(options)
        body, headers = signed_webhook(
            payload, secret, timestamp=options["timestamp"], schemes=options["signatures"]
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "didit_channels didit_send_webhook"
        try:
            response = httpx.post(
                options["url"], content=body, headers=headers, timeout=options["timeout"]
            )
        except httpx.HTTPError as exc:
            raise CommandError(
                f"POST {options['url']} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self.stdout.write(
            f"POST {options['url']} session={payload.get('session_id')!s} "
            f"status={payload.get('status')!s} -> {response.status_code} {response.text[:500]}"
        )
        if not response.is_success:
            raise CommandError(f"the endpoint answered {response.status_code}")

    def _payload(self, options: dict[str, Any]) -> dict[str, Any]:
        raw = options["payload"]
        if raw:
            text = Path(raw[1:]).read_text(encoding="utf-8") if raw.startswith("@") else raw
            try:
                payload = json.loads(text)
            except ValueError as exc:
                raise CommandError(f"--payload is not JSON: {exc}") from exc
            if not isinstance(payload, dict):
                raise CommandError("--payload must be a JSON object")
            return payload
        return status_payload(
            options["session_id"] or str(uuid.uuid4()),
            options["status"],
            vendor_data=options["vendor_data"],
            webhook_type=options["webhook_type"],
            timestamp=options["timestamp"],
            event_id=options["event_id"],
        )
