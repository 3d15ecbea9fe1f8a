"""Re-fetch quiet, unfinished sessions from Didit: the safety net for lost webhooks.

Run it from cron (every 15 minutes, say). Sessions in a non-final status that
have not changed for ``RECONCILE_AFTER_SECONDS`` (default one hour) get their
decision fetched; a different status is applied like a webhook (history,
signal, push). Exits non-zero when a session could not be fetched, so cron
reports it; the others are still processed. See ``didit_channels.reconcile``.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...client import DiditNotConfigured
from ...conf import didit_settings
from ...reconcile import Outcome, reconcile, sessions_due
from ..arguments import non_negative_int, positive_int


class Command(BaseCommand):
    help = (
        "Fetch the Didit decision of sessions stuck in a non-final status for longer than "
        "DIDIT_CHANNELS['RECONCILE_AFTER_SECONDS'] and apply any status change missed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=non_negative_int,
            metavar="SECONDS",
            help="Only sessions unchanged for this long (default: RECONCILE_AFTER_SECONDS).",
        )
        parser.add_argument(
            "--limit",
            type=positive_int,
            help="Fetch at most this many sessions, the longest-silent first.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the sessions that are due; call Didit for none of them.",
        )

    def handle(self, *args, older_than, limit, dry_run: bool, **options) -> None:
        seconds = didit_settings.RECONCILE_AFTER_SECONDS if older_than is None else older_than
        age = timedelta(seconds=seconds)
        if dry_run:
            due = sessions_due(age).only("session_id", "status")
            if limit is not None:
                due = due[:limit]
            count = 0
            for session in due:
                count += 1
                self.stdout.write(f"{session.session_id}\t{session.status}")
            self.stdout.write(f"{count} session(s) due for reconciliation")
            return
        try:
            report = reconcile(older_than=age, limit=limit)
        except DiditNotConfigured as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"didit_reconcile: {report}")
        failed = report.count(Outcome.FAILED)
        if failed:
            raise CommandError(
                f"{failed} session(s) could not be reconciled (see the log); "
                "they are retried on the next run."
            )
