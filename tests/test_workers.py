"""didit_channels.workers: connection upkeep in worker threads, and SQLite writers taking turns."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from didit_channels.models import ConnectionTicket
from didit_channels.workers import in_worker, serialized_writes, tidy_connections

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10  # seconds any thread here may wait before the test gives up


def in_thread(function):
    """Run ``function`` in a fresh thread (its own connections); return what it returned."""
    result: list = []
    errors: list = []

    def run():
        try:
            result.append(function())
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    return result[0]


def test_a_worker_keeps_a_sqlite_connection_and_follows_conn_max_age_elsewhere():
    def query_then_tidy():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        opened = connection.connection
        tidy_connections()
        return opened is not None, connection.connection is opened

    opened, kept = in_thread(query_then_tidy)
    assert opened
    if connection.vendor == "sqlite":
        assert kept  # a file handle: reopening it cost more than a handshake's queries
    else:
        # The demo's PostgreSQL: CONN_MAX_AGE 0 with a pool; the connection goes back.
        assert connection.settings_dict["CONN_MAX_AGE"] == 0
        assert not kept


def test_a_broken_sqlite_connection_is_not_kept():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's connections are the ones kept")

    def break_then_tidy():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        connection.connection.close()  # as if the file went away under it
        connection.errors_occurred = True
        tidy_connections()
        return connection.connection

    assert in_thread(break_then_tidy) is None


async def test_in_worker_runs_the_function_with_a_usable_connection(alice):
    def count():
        return ConnectionTicket.objects.filter(user=alice).count()

    assert await in_worker(count)() == 0


def test_sqlite_writers_of_one_process_take_turns():
    holding, release, second_entered = threading.Event(), threading.Event(), threading.Event()

    def first():
        with serialized_writes():
            holding.set()
            assert release.wait(WAIT)

    def second():
        assert holding.wait(WAIT)
        with serialized_writes():
            second_entered.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert holding.wait(WAIT)
    waited = not second_entered.wait(0.3)
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert second_entered.is_set()
    # On SQLite the second waited for the first; elsewhere nothing is serialised here.
    assert waited == (connection.vendor == "sqlite")


def test_no_turn_is_taken_inside_an_open_transaction():
    # A transaction already open may hold SQLite's write lock: waiting for the
    # process's turn there could deadlock against a writer waiting for it.
    holding, release = threading.Event(), threading.Event()

    def holder():
        with serialized_writes():
            holding.set()
            assert release.wait(WAIT)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(WAIT)

        def nested():
            with transaction.atomic(), serialized_writes():
                return True

        assert in_thread(nested)
    finally:
        release.set()
        thread.join(WAIT)
