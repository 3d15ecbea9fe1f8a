"""Database faults for tests: inserts into a table fail, as if the server went away.

On SQLite the statement fails at Django's cursor (``execute_wrapper``). On
PostgreSQL it fails in the database itself, by a trigger, so the fault also
strikes inside ``didit_channels_receive_webhook_v1`` (which Django's cursor
sees as one call) and PostgreSQL's own rollback is what gets tested. Either
way the error is an ``OperationalError``, like a dropped connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import OperationalError, connection

MESSAGE = "simulated: server closed the connection unexpectedly"
EVENTS = "didit_channels_statusevent"
DELIVERIES = "didit_channels_webhookdelivery"


@contextmanager
def inserts_fail(table: str) -> Iterator[None]:
    """Every INSERT into ``table`` fails while the block runs."""
    if connection.vendor != "postgresql":
        fragment = f'INSERT INTO "{table}"'

        def wrapper(execute, sql, params, many, context):
            if fragment in sql:
                raise OperationalError(MESSAGE)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(wrapper):
            yield
        return
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        # 08006 (connection_failure): psycopg raises it as an OperationalError.
        cursor.execute(
            "CREATE OR REPLACE FUNCTION didit_test_insert_fails() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = '08006'; "
            "END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER didit_test_insert_fails BEFORE INSERT ON {qn(table)} "
            "FOR EACH ROW EXECUTE FUNCTION didit_test_insert_fails()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER didit_test_insert_fails ON {qn(table)}")
            cursor.execute("DROP FUNCTION didit_test_insert_fails()")
