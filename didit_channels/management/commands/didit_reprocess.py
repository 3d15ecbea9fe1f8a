"""Re-apply webhook deliveries that failed on our side (``outcome == "error"``).

A delivery whose signature was valid but whose apply hit a server fault (the
database went away, a ``session_status_changed`` receiver raised, the Didit
API was down for an X-Signature-Simple delivery) is kept with outcome
``error``. Didit retries on its own; this command is for when its retries ran
out, or to catch up at once after an outage. Deliveries are re-applied oldest
first, through the same path as the webhook, so a change Didit's retry has
already applied is recorded as a duplicate, never applied twice.

Only rows with ``signature_valid=True`` qualify: signature values are not
stored, so a delivery that was never verified can never be verified later.
A request that crashed the process mid-judgement stays ``received``; Didit got
no 200 for it and retries it.

Exits non-zero when some delivery still fails, so cron reports it.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...models import WebhookDelivery
from ...models.deliveries import DeliveryOutcome
from ...webhooks import intake
from ..arguments import positive_int


class Command(BaseCommand):
    help = (
        "Re-apply verified Didit webhook deliveries whose outcome is 'error' (oldest first). "
        "Pass delivery ids to pick some; --dry-run lists them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "ids", nargs="*", type=positive_int, metavar="ID", help="Only these delivery ids."
        )
        parser.add_argument("--limit", type=positive_int, help="Reprocess at most this many.")
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be reprocessed; change nothing."
        )

    def handle(self, *args, ids: list[int], limit: int | None, dry_run: bool, **options) -> None:
        due = WebhookDelivery.objects.filter(
            outcome=DeliveryOutcome.ERROR, signature_valid=True
        ).order_by("id")
        if ids:
            due = due.filter(pk__in=ids)
            skipped = set(ids) - set(due.values_list("pk", flat=True))
            for pk in sorted(skipped):
                self.stderr.write(f"delivery {pk}: skipped (not a verified delivery in error)")
        if limit is not None:
            due = due[:limit]

        if dry_run:
            rows = list(due.values_list("pk", "session_id", "received_at", "error"))
            for pk, session_id, received_at, error in rows:
                self.stdout.write(f"{pk}\t{session_id}\t{received_at.isoformat()}\t{error[:80]}")
            self.stdout.write(f"{len(rows)} delivery(ies) would be reprocessed")
            return

        counts: dict[str, int] = {}
        failed = 0
        for delivery in due.iterator():
            result = intake.reprocess(delivery)
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            self.stdout.write(f"delivery {delivery.pk}: {result.outcome}")
            if result.status >= 500:
                failed += 1
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
        self.stdout.write(f"didit_reprocess: {summary or 'nothing to do'}")
        if failed:
            raise CommandError(f"{failed} delivery(ies) still failing; see the log and retry.")
