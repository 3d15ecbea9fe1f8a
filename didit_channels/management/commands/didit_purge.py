"""Delete identity data older than its retention period (run it daily, e.g. from cron).

Clears decisions stored more than ``DECISION_RETENTION_DAYS`` (default 365)
days ago and deletes raw webhook deliveries received more than
``DELIVERY_RETENTION_DAYS`` (default 30) days ago. Sessions, their status
history and the decision-access audit log are kept. See
``didit_channels.retention``.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import didit_settings
from ...retention import purge
from ..arguments import non_negative_int


class Command(BaseCommand):
    help = (
        "Clear verification decisions and delete raw webhook deliveries older than the "
        "retention periods in DIDIT_CHANNELS (DECISION_RETENTION_DAYS, "
        "DELIVERY_RETENTION_DAYS). Status history is kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--decision-days",
            type=non_negative_int,
            help="Clear decisions older than this many days (default: DECISION_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--delivery-days",
            type=non_negative_int,
            help="Delete webhook deliveries older than this many days "
            "(default: DELIVERY_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be removed; change nothing.",
        )

    def handle(self, *args, decision_days, delivery_days, dry_run: bool, **options) -> None:
        if decision_days is None:
            decision_days = didit_settings.DECISION_RETENTION_DAYS
        if delivery_days is None:
            delivery_days = didit_settings.DELIVERY_RETENTION_DAYS
        try:
            report = purge(
                decision_days=decision_days, delivery_days=delivery_days, dry_run=dry_run
            )
        except (TypeError, ValueError) as exc:
            raise CommandError(
                "DECISION_RETENTION_DAYS and DELIVERY_RETENTION_DAYS must be whole numbers "
                f"of days, 0 or more, or None to keep the data ({exc})."
            ) from exc
        verb = "Would clear" if dry_run else "Cleared"
        if report.decision_cutoff is None:
            self.stdout.write("Decisions: kept (DECISION_RETENTION_DAYS is None).")
        else:
            self.stdout.write(
                f"{verb} {report.decisions_cleared} decision(s) stored before "
                f"{report.decision_cutoff.isoformat()}."
            )
        verb = "Would delete" if dry_run else "Deleted"
        if report.delivery_cutoff is None:
            self.stdout.write("Webhook deliveries: kept (DELIVERY_RETENTION_DAYS is None).")
        else:
            self.stdout.write(
                f"{verb} {report.deliveries_deleted} webhook delivery(ies) received before "
                f"{report.delivery_cutoff.isoformat()}."
            )
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
