"""How long identity data is kept, and erasing one person's verification data.

Two kinds of rows hold personal data from Didit: the decision stored on each
``VerificationSession`` and the raw body of each ``WebhookDelivery``. Both are
encrypted at rest; this module removes them when they are no longer needed.

What stays, always: sessions with their status, and the status history
(``StatusEvent``). They hold no identity data, the live channel's cursor and
``resume`` rest on them, and they are how the site knows a user was verified.
``DecisionAccess`` rows stay too: they are the audit log of who read what.

``purge`` (``manage.py didit_purge``, run it daily):

- clears the decision (``decision`` and ``decision_updated_at`` set to NULL)
  of sessions whose decision was stored more than
  ``DIDIT_CHANNELS["DECISION_RETENTION_DAYS"]`` (default 365) days ago;
- deletes webhook deliveries received more than
  ``DIDIT_CHANNELS["DELIVERY_RETENTION_DAYS"]`` (default 30) days ago. The
  history rows that pointed at them keep their place, with ``delivery`` NULL.

A setting of ``None`` keeps that kind of data forever.

``erase_user`` / ``erase_sessions`` (``manage.py didit_erase_user``, and an
admin action) clear the decisions of a user's sessions and delete the
deliveries about them (matched by ``session_id``), at once, whatever their age.
With ``delete_sessions=True`` the sessions and their history go as well.

Caveats: a delivery whose body never parsed carries no ``session_id`` and is
reached only by the age-based purge. Didit may still send a webhook for an
erased session later; it is stored like any other (erasure is not a block).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .conf import didit_settings
from .models import StatusEvent, VerificationSession, WebhookDelivery

# Rows per transaction: keeps locks short and memory flat on large tables.
BATCH_SIZE = 500


class _FromSettings:
    def __repr__(self) -> str:
        return "FROM_SETTINGS"


# Default of ``purge``'s periods: read the setting (None already means "keep").
FROM_SETTINGS: Any = _FromSettings()


@dataclass
class PurgeReport:
    """What ``purge`` removed (or, on a dry run, would remove)."""

    decisions_cleared: int = 0
    deliveries_deleted: int = 0
    decision_cutoff: datetime | None = None
    delivery_cutoff: datetime | None = None
    dry_run: bool = False


@dataclass
class ErasureReport:
    """What an erasure removed (or, on a dry run, would remove)."""

    session_ids: list[str] = field(default_factory=list)
    decisions_cleared: int = 0
    deliveries_deleted: int = 0
    sessions_deleted: int = 0
    events_deleted: int = 0
    dry_run: bool = False

    def merge(self, other: ErasureReport) -> None:
        self.session_ids.extend(other.session_ids)
        self.decisions_cleared += other.decisions_cleared
        self.deliveries_deleted += other.deliveries_deleted
        self.sessions_deleted += other.sessions_deleted
        self.events_deleted += other.events_deleted

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = [
            f"{self.decisions_cleared} decision(s)",
            f"{self.deliveries_deleted} webhook delivery(ies)",
        ]
        if self.sessions_deleted:
            parts.append(
                f"{self.sessions_deleted} session(s) with {self.events_deleted} status event(s)"
            )
        kept = "" if self.sessions_deleted else "; sessions and status history kept"
        return f"{len(self.session_ids)} session(s) concerned: {verb} {', '.join(parts)}{kept}."


def _cutoff(days: int | None, now: datetime) -> datetime | None:
    if days is None:
        return None
    days = int(days)
    if days < 0:
        raise ValueError("A retention period cannot be negative.")
    return now - timedelta(days=days)


def _delete_deliveries(queryset: QuerySet[WebhookDelivery]) -> int:
    """Delete deliveries in batches without loading (decrypting) their bodies."""
    deleted = 0
    while True:
        with transaction.atomic():
            batch = list(queryset.order_by("pk").values_list("pk", flat=True)[:BATCH_SIZE])
            if not batch:
                return deleted
            # What on_delete=SET_NULL would do, minus loading every row first.
            StatusEvent.objects.filter(delivery_id__in=batch).update(delivery=None)
            deleted += WebhookDelivery.objects.filter(pk__in=batch).only("pk").delete()[0]


def _clear_decisions(queryset: QuerySet[VerificationSession]) -> int:
    # update() neither loads the decision nor bumps updated_at: clearing
    # identity data is not a change of the session's status.
    return queryset.update(decision=None, decision_updated_at=None)


def expired_decisions(now: datetime, days: int | None) -> QuerySet[VerificationSession]:
    cutoff = _cutoff(days, now)
    if cutoff is None:
        return VerificationSession.objects.none()
    return VerificationSession.objects.filter(decision__isnull=False).filter(
        Q(decision_updated_at__lt=cutoff)
        # A decision stored without its timestamp ages from the session's creation.
        | Q(decision_updated_at__isnull=True, created_at__lt=cutoff)
    )


def expired_deliveries(now: datetime, days: int | None) -> QuerySet[WebhookDelivery]:
    cutoff = _cutoff(days, now)
    if cutoff is None:
        return WebhookDelivery.objects.none()
    return WebhookDelivery.objects.filter(received_at__lt=cutoff)


def purge(
    *,
    decision_days: int | None = FROM_SETTINGS,
    delivery_days: int | None = FROM_SETTINGS,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PurgeReport:
    """Remove decisions and raw deliveries older than their retention periods.

    ``decision_days`` / ``delivery_days`` default to the settings
    ``DECISION_RETENTION_DAYS`` / ``DELIVERY_RETENTION_DAYS``; ``None`` keeps
    that kind of data. Raises ``ValueError`` for a negative period.
    """
    now = now or timezone.now()
    if decision_days is FROM_SETTINGS:
        decision_days = didit_settings.DECISION_RETENTION_DAYS
    if delivery_days is FROM_SETTINGS:
        delivery_days = didit_settings.DELIVERY_RETENTION_DAYS
    report = PurgeReport(
        decision_cutoff=_cutoff(decision_days, now),
        delivery_cutoff=_cutoff(delivery_days, now),
        dry_run=dry_run,
    )
    decisions = expired_decisions(now, decision_days)
    deliveries = expired_deliveries(now, delivery_days)
    if dry_run:
        report.decisions_cleared = decisions.count()
        report.deliveries_deleted = deliveries.count()
        return report
    report.decisions_cleared = _clear_decisions(decisions)
    report.deliveries_deleted = _delete_deliveries(deliveries)
    return report


def erase_sessions(
    sessions: QuerySet[VerificationSession],
    *,
    delete_sessions: bool = False,
    dry_run: bool = False,
) -> ErasureReport:
    """Erase the identity data of ``sessions``: decisions and their deliveries.

    Runs in one transaction with the session rows locked, so a webhook being
    applied to one of them at the same moment lands either before (and is
    erased) or after. ``delete_sessions`` also deletes the sessions and their
    status history (``DecisionAccess`` rows keep the session's id as text).
    """
    report = ErasureReport(dry_run=dry_run)
    with transaction.atomic():
        locked = VerificationSession.objects.filter(
            pk__in=sessions.values("pk")
        ).select_for_update()
        rows = list(locked.order_by("pk").values_list("pk", "session_id"))
        pks = [pk for pk, _ in rows]
        report.session_ids = [session_id for _, session_id in rows]
        targets = VerificationSession.objects.filter(pk__in=pks)
        deliveries = WebhookDelivery.objects.filter(session_id__in=report.session_ids)
        report.decisions_cleared = targets.filter(decision__isnull=False).count()
        report.deliveries_deleted = deliveries.count()
        if delete_sessions:
            report.sessions_deleted = len(pks)
            report.events_deleted = StatusEvent.objects.filter(session_id__in=pks).count()
        if dry_run:
            return report
        _clear_decisions(targets)
        StatusEvent.objects.filter(delivery__in=deliveries).update(delivery=None)
        deliveries.only("pk").delete()
        if delete_sessions:
            StatusEvent.objects.filter(session_id__in=pks).delete()
            targets.only("pk").delete()
    return report


def erase_user(user: Any, *, delete_sessions: bool = False, dry_run: bool = False) -> ErasureReport:
    """Erase the verification data of every session belonging to ``user``.

    Call it before deleting the user's account: once the account is gone its
    sessions are unassigned and can only be erased one by one (admin action)
    or by the age-based purge.
    """
    return erase_sessions(
        VerificationSession.objects.filter(user=user),
        delete_sessions=delete_sessions,
        dry_run=dry_run,
    )
