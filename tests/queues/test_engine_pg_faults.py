"""PostgreSQL going away under procrastinate and Django's tasks framework (django-tasks-db's
database backend), on a cluster of the test's own so the shared server is never stopped: the
jobs or tasks and our store both live in it. 503 + Retry-After while it is down, 200 again with
nothing restarted, every acknowledged delivery run exactly once. Mirrors
``test_postgres_faults.py`` for the PostgreSQL queue."""

from __future__ import annotations

import contextlib
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.queues.engines import (
    POLICY,
    SECRET,
    Handler,
    accepted_id,
    areceive,
    assert_unavailable,
    receive,
    timed,
)
from tests.servers import free_port, wait_until
from tests.services import PostgresServer, postgres_server
from webhook_guard.core.guard import Guard
from webhook_guard.queues.broker import BrokerQueue

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with postgres_server(free_port()) as running:
        yield running


def guard_on(queue: BrokerQueue, handler: Handler) -> Guard:
    guard = Guard(
        SECRET,
        queue=queue,
        endpoint=f"{queue.engine}-{uuid.uuid4().hex[:8]}",
        worker="external",
        retry=POLICY,
    )
    guard.add_handler(handler)
    return guard


def through_a_restart(
    server: PostgresServer,
    queue: BrokerQueue,
    start_worker: Callable[[], Any],
    *,
    worker_survives: bool,
) -> None:
    """Deliveries before a crash-like stop, 503 + Retry-After (sync and async) while it is
    down, 200 again once it is back with the same Guard on ``queue``: every acknowledged
    delivery runs exactly once. ``worker_survives``: the engine's worker runs on through the
    outage (else it is found dead afterwards, as a supervisor would, and started again). The
    Guard, the queue and the queue's PostgreSQL store are closed at the end."""
    handler = Handler()
    guard = guard_on(queue, handler)
    store: Any = queue.store
    try:
        _through_a_restart(server, guard, handler, store, start_worker, worker_survives)
    finally:
        guard.close()
        queue.close()
        store.dispose()


def _through_a_restart(
    server: PostgresServer,
    guard: Guard,
    handler: Handler,
    store: Any,
    start_worker: Callable[[], Any],
    worker_survives: bool,
) -> None:
    worker = start_worker()
    try:
        acknowledged = [
            accepted_id(receive(guard, json.dumps({"n": n}).encode())) for n in range(5)
        ]
        worker.until(lambda: all(store.get(i).status == "processed" for i in acknowledged))
        server.stop()
        for n in range(5, 8):
            body = json.dumps({"n": n}).encode()
            for send in (receive, areceive):
                outcome, seconds = timed(functools.partial(send, guard, body))
                assert_unavailable(outcome)
                assert seconds < 5, seconds  # the connect timeouts, no hang
        server.start()
        for n in range(5, 15):  # the senders' retries, and new deliveries
            acknowledged.append(accepted_id(receive(guard, json.dumps({"n": n}).encode())))
        if not worker_survives:
            assert wait_until(lambda: worker.failure is not None, 10), "the worker kept running"
            worker.stop()
            worker = start_worker()
        worker.until(lambda: all(store.get(i).status == "processed" for i in acknowledged))
        time.sleep(1.0)  # nothing runs twice afterwards
        assert sorted(d.id for d in handler.runs) == sorted(acknowledged)
    finally:
        worker.stop()


def test_procrastinate_through_a_postgres_restart(server: PostgresServer) -> None:
    """procrastinate's jobs and our PostgreSQL store on one cluster, stopped and started under
    a live Guard and procrastinate's real worker: the Guard and the worker both recover with
    nothing restarted."""
    pytest.importorskip("procrastinate")
    import procrastinate

    from tests.queues.engines import ProcrastinateWorker
    from webhook_guard.queues.postgres import PostgresQueue
    from webhook_guard.queues.procrastinate import ProcrastinateQueue

    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=server.url))
    with app.open():
        app.schema_manager.apply_schema()
    queue = ProcrastinateQueue(server.url, PostgresQueue(server.url), queue_name="wg_restart")
    through_a_restart(server, queue, lambda: ProcrastinateWorker(queue), worker_survives=True)


@contextlib.contextmanager
def tasks_database_on(server: PostgresServer) -> Iterator[None]:
    """The tasks backend's database alias pointed at ``server`` (created and migrated there)
    for the block, as a project whose database is that server has it."""
    pytest.importorskip("django_tasks")
    pytest.importorskip("django_tasks_db")
    import psycopg

    from tests.adapters.transports_django import TASKS_DATABASE, TASKS_DB_NAME, configure

    configure()
    from django.core.management import call_command
    from django.db import connections

    from tests.adapters.transports_django import TasksRouter

    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{TASKS_DB_NAME}"')
    alias = f"{TASKS_DATABASE}_{server.port}"
    connections.settings[alias] = {**connections.settings[TASKS_DATABASE], "PORT": str(server.port)}
    saved, TasksRouter.database = TasksRouter.database, alias
    try:
        call_command("migrate", "django_tasks_database", database=alias, verbosity=0)
        connections[alias].close()
        yield
    finally:
        TasksRouter.database = saved
        connections[alias].close()


def test_django_tasks_through_a_postgres_restart(server: PostgresServer) -> None:
    """django-tasks-db's table and our PostgreSQL store on one cluster, stopped and started
    under a live Guard and the backend's real worker loop (``db_worker``'s): the Guard recovers
    by itself (its first enqueue after the restart is not lost to a dead connection); the
    worker loop ends with the database error, and a worker started again runs the rest."""
    with tasks_database_on(server):
        from tests.queues.engines import DjangoTasksWorker
        from webhook_guard.queues.django_tasks import DjangoTasksQueue
        from webhook_guard.queues.postgres import PostgresQueue

        queue = DjangoTasksQueue("default", PostgresQueue(server.url), queue_name="wg_restart")
        # db_worker's loop re-raises any database error but a locked SQLite file: the worker
        # process exits while PostgreSQL is down, and must be started again.
        through_a_restart(server, queue, lambda: DjangoTasksWorker(queue), worker_survives=False)
