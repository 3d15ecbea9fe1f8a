"""Indexes only where a query uses them: every webhook writes to all of them.

A webhook inserts a delivery and a history row and updates its session, and
on PostgreSQL each of those writes goes to every index of the table (the
session's update changes ``updated_at``, which is indexed, so it is never a
HOT update). Before this migration that was 27 index entries per webhook;
after it, 18 (``scripts/wal_per_webhook.py`` measures the WAL):

* ``db_index=True`` on a text column also made PostgreSQL's LIKE-only
  ``varchar_pattern_ops`` twin; nothing here runs a prefix ``LIKE`` (the
  admin searches by substring, which neither serves). Those columns now have
  one plain index each (``status``, ``workflow_id``; a delivery's
  ``dedupe_key``, ``session_id``, ``outcome``).
* ``vendor_data`` is no longer indexed: nothing looks a session up by it.
* The ``user`` foreign keys of sessions and history rows lose their own
  index: ``(user, -updated_at)`` and ``(user, id)`` lead with the same column.

The new indexes are built before the old ones are dropped, so lookups never
go without one. Building them locks writes to the table while it runs (a
plain CREATE INDEX): on a large ``webhookdelivery`` table, migrate in a quiet
period (Didit retries a webhook that times out).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("didit_channels", "0004_ticket_login_hash"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="verificationsession",
            index=models.Index(fields=["status"], name="didit_session_status_idx"),
        ),
        migrations.AddIndex(
            model_name="verificationsession",
            index=models.Index(fields=["workflow_id"], name="didit_session_workflow_idx"),
        ),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(fields=["dedupe_key"], name="didit_delivery_dedupe_idx"),
        ),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(fields=["session_id"], name="didit_delivery_session_idx"),
        ),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(fields=["outcome"], name="didit_delivery_outcome_idx"),
        ),
        migrations.AlterField(
            model_name="statusevent",
            name="user",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="didit_events",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="verificationsession",
            name="status",
            field=models.CharField(default="Not Started", max_length=64),
        ),
        migrations.AlterField(
            model_name="verificationsession",
            name="user",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                help_text="Resolved from vendor_data; empty when it could not be resolved.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="didit_sessions",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="verificationsession",
            name="vendor_data",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AlterField(
            model_name="verificationsession",
            name="workflow_id",
            field=models.CharField(blank=True, max_length=128),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="dedupe_key",
            field=models.CharField(blank=True, max_length=128),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("received", "received, not yet judged"),
                    ("accepted", "accepted and applied"),
                    ("duplicate", "duplicate of an earlier delivery"),
                    ("stale", "older than the newest applied; recorded only"),
                    ("bad_signature", "signature or timestamp invalid"),
                    ("malformed", "malformed body"),
                    ("too_large", "body over the size limit"),
                    ("error", "server error; retried by Didit or didit_reprocess"),
                ],
                default="received",
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="session_id",
            field=models.CharField(blank=True, max_length=128),
        ),
    ]
