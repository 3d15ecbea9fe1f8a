#!/usr/bin/env python3
"""What one webhook writes on PostgreSQL: WAL bytes, and the indexes each row touches.

    python scripts/wal_per_webhook.py postgres://postgres@127.0.0.1:5432/<empty database>

Migrates the (empty) database, then posts signed webhooks through the real
endpoint (Django's test client, the app's own intake and database function):
``--count`` for new sessions, then one status change for each of them, and
prints the write-ahead-log bytes per webhook of each kind, next to a bare
baseline measured the same way in the same run: an ``UPDATE`` of one column of
a one-index table per webhook, the least a database write costs. Also the
indexes of the app's tables, which every insert (and every non-HOT update)
writes to. Deterministic enough to compare schema changes; not a timing.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = secrets.token_urlsafe(24)  # this run's own webhook secret


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    os.environ.update(
        DATABASE_URL=args.database_url,
        DJANGO_DEBUG="1",
        DJANGO_ALLOWED_HOSTS="testserver",
        DIDIT_WEBHOOK_SECRET=SECRET,
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    os.environ.pop("REDIS_URL", None)  # the in-memory layer: nothing here is about delivery

    import django

    django.setup()
    logging.getLogger("didit_channels").setLevel(logging.WARNING)  # one line per webhook
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from didit_channels.testing import signed_webhook, status_payload

    if connection.vendor != "postgresql":
        sys.exit("needs a PostgreSQL database_url")
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM didit_channels_statusevent")
        if cursor.fetchone()[0]:
            sys.exit("needs an empty database (the counts below are per webhook)")
    user = get_user_model().objects.create_user("wal-probe", password=None)
    client = Client()

    def lsn() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")
            return int(cursor.fetchone()[0])

    def post(session_id: str, status: str) -> None:
        payload = status_payload(session_id, status, vendor_data=str(user.pk))
        body, headers = signed_webhook(payload, SECRET)
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        response = client.post(
            "/didit/webhook/", data=body, content_type="application/json", **extra
        )
        if response.status_code != 200:
            sys.exit(f"the webhook was answered {response.status_code}")

    def per_webhook(step) -> float:
        before = lsn()
        for index in range(args.count):
            step(index)
        return (lsn() - before) / args.count

    sessions = [f"wal-{uuid.uuid4().hex[:12]}" for _ in range(args.count)]
    new = per_webhook(lambda i: post(sessions[i], "In Progress"))
    change = per_webhook(lambda i: post(sessions[i], "Approved"))

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS wal_probe_bare")
        cursor.execute("CREATE TABLE wal_probe_bare (id int PRIMARY KEY, n int)")
        cursor.execute("INSERT INTO wal_probe_bare VALUES (1, 0)")

    def bare_logged(_index: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE wal_probe_bare SET n = n + 1 WHERE id = 1")

    baseline = per_webhook(bare_logged)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE wal_probe_bare")
        cursor.execute(
            "SELECT tablename, count(*) FROM pg_indexes "
            "WHERE tablename LIKE 'didit_channels_%%' GROUP BY 1 ORDER BY 1"
        )
        indexes = cursor.fetchall()

    print(f"== WAL per webhook (PostgreSQL, {args.count} of each)")
    print(f"  bare: one-row UPDATE, one index    {baseline:8.0f} B")
    print(f"  webhook, new session               {new:8.0f} B  ({new / baseline:.1f}x bare)")
    print(f"  webhook, status change             {change:8.0f} B  ({change / baseline:.1f}x bare)")
    print("== indexes per table")
    for table, count in indexes:
        print(f"  {table:40} {count}")


if __name__ == "__main__":
    main()
