"""One harness per queue engine, so that ``test_engine_suite.py`` runs unchanged against each.

A harness says what the shared tests cannot say in general: the queue URL for a test's own queue
name and store, how to run the engine's real worker in this process until a condition holds, how
to empty the broker afterwards, and whether the test may start and kill a broker of its own.
Adding an engine means adding a harness here, never a test.

Each harness imports its engine only when a test starts it. A missing engine skips (arq needs
redis<6, so it is not installed in ``.venv``: it runs in ``.venv-arq``, ``make test-arq``); a
missing Redis or RabbitMQ skips, or fails under ``WEBHOOK_GUARD_REQUIRE_SERVICES=1``
(``tests/services.py``). Redis DBs as before: Celery 13, Dramatiq 14, RQ and arq 10 (broker) and
11 (store), flushed before and after each test that uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

import pytest

from tests.servers import ROOT, free_port, spawn, stop, wait_until
from tests.services import (
    postgres_schema,
    postgres_url,
    redis_server,
    require_postgres,
    require_rabbitmq,
    require_redis,
)
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard, Outcome
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.queues import open_queue
from webhook_guard.queues.broker import BrokerQueue
from webhook_guard.testing import sign_request

SECRET = "engine-suite-secret"
POLICY = RetryPolicy(max_attempts=4, base_seconds=0.2, cap_seconds=0.5)
NO_WAIT = RetryPolicy(max_attempts=4, base_seconds=0.0)  # where the delays play no part
SHARED_REDIS = "redis://127.0.0.1:6379"
LIMIT = 60.0  # seconds a worker gets to reach a condition before the test fails

# -- requests and handlers -----------------------------------------------------------------


def signed(body: bytes, msg_id: str | None = None) -> dict[str, str]:
    """Headers of a signed POST; the same headers twice are the sender retrying one delivery."""
    return sign_request("cloudaipilot", SECRET, body, msg_id=msg_id)


def receive(
    guard: Guard, body: bytes, headers: dict[str, str] | None = None, *, tamper: bool = False
) -> Outcome:
    """POST ``body`` through ``Guard.receive``, signed unless ``headers`` are given again."""
    sent = body + (b"!" if tamper else b"")
    return guard.receive("POST", "/webhook", headers or signed(body), sent)


def areceive(guard: Guard, body: bytes, headers: dict[str, str] | None = None) -> Outcome:
    """The ASGI path: ``Guard.areceive`` awaited on a short-lived event loop."""
    return asyncio.run(guard.areceive("POST", "/webhook", headers or signed(body), body))


def timed(call: Callable[[], Outcome]) -> tuple[Outcome, float]:
    started = time.monotonic()
    outcome = call()
    return outcome, time.monotonic() - started


def accepted_id(outcome: Outcome) -> str:
    assert outcome.status == 200, outcome
    delivery_id: str = json.loads(outcome.body)["id"]
    return delivery_id


def assert_unavailable(outcome: Outcome) -> None:
    assert outcome.status == 503 and json.loads(outcome.body) == {"error": "queue_unavailable"}
    assert dict(outcome.headers).get("Retry-After"), "503 must carry Retry-After"


def store_of(guard: Guard) -> Any:
    """The Guard's delivery store (SQLite or Redis: both have ``get`` and ``deliveries``)."""
    assert isinstance(guard.queue, BrokerQueue)
    return guard.queue.store


def status_is(guard: Guard, delivery_id: str, status: str) -> Callable[[], bool]:
    return lambda: getattr(store_of(guard).get(delivery_id), "status", None) == status


def fail_always(delivery: Delivery) -> BaseException:
    return RuntimeError(f"asked to fail on attempt {delivery.attempt}")


class Handler:
    """Records every run; raises what ``fail(delivery)`` returns (``fail`` may be swapped or
    set to None while a worker runs)."""

    def __init__(self, fail: Callable[[Delivery], BaseException | None] | None = None) -> None:
        self.runs: list[Delivery] = []
        self.fail = fail

    def __call__(self, delivery: Delivery) -> None:
        self.runs.append(delivery)
        error = self.fail(delivery) if self.fail is not None else None
        if error is not None:
            raise error

    @property
    def calls(self) -> list[tuple[str, int, bytes]]:
        return [(d.id, d.attempt, d.body) for d in self.runs]

    def attempts(self, delivery_id: str) -> list[int]:
        return [d.attempt for d in self.runs if d.id == delivery_id]


@contextlib.contextmanager
def logged(name: str) -> Iterator[list[str]]:
    """Messages logged to logger ``name`` during the block, whatever an engine did to the root
    logger's handlers."""

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    messages: list[str] = []
    recorder = Recorder()
    logging.getLogger(name).addHandler(recorder)
    try:
        yield messages
    finally:
        logging.getLogger(name).removeHandler(recorder)


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a hung broker."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel completes handshakes; nobody ever reads or writes
        yield int(server.getsockname()[1])


class OwnRedis:
    """A redis-server of the test's own (``tests.services.redis_server``) that it may kill and
    start again on the same port, so that the machine's shared Redis is never stopped."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[OwnRedis]:
        with redis_server(self.port) as server:
            self._server = server
            yield self

    def kill(self) -> None:
        assert self._server is not None
        self._server.kill()
        self._server.wait()


# -- workers -------------------------------------------------------------------------------


class Worker(Protocol):
    def until(self, done: Callable[[], bool], limit: float = LIMIT) -> None:
        """Let the engine's worker run until ``done()`` holds (assert it does in time)."""


class Polling:
    """A worker that runs by itself in threads of this process: wait for the condition."""

    def until(self, done: Callable[[], bool], limit: float = LIMIT) -> None:
        assert wait_until(done, limit), "the worker did not get there in time"


class RQBursts:
    """RQ's SimpleWorker, scheduler included, in burst mode in this thread, again until the
    condition holds (a burst worker moves only the retries already due, so it runs again)."""

    def __init__(self, queue: Any) -> None:
        import redis
        from rq import Queue
        from rq.serializers import JSONSerializer

        kwargs = queue.connection.connection_pool.connection_kwargs
        self.connection = redis.Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs["db"])
        self.queue = Queue(queue.queue_name, connection=self.connection, serializer=JSONSerializer)

    def until(self, done: Callable[[], bool], limit: float = LIMIT) -> None:
        from rq import SimpleWorker
        from rq.serializers import JSONSerializer

        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        deadline = time.monotonic() + limit
        try:
            while True:
                worker = SimpleWorker(
                    [self.queue], connection=self.connection, serializer=JSONSerializer
                )
                worker.work(burst=True, with_scheduler=True)
                if done():
                    return
                assert time.monotonic() < deadline, "the RQ worker did not get there in time"
                time.sleep(0.05)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)


class ArqBursts:
    """arq's Worker (settings from ``WorkerSettings``) in burst mode, one job per burst, again
    until the condition holds (a burst ends only when no job is left, deferred ones included:
    one job per burst lets a redelivered job be looked at between its runs)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def until(self, done: Callable[[], bool], limit: float = LIMIT) -> None:
        asyncio.run(self._until(done, limit))

    async def _until(self, done: Callable[[], bool], limit: float) -> None:
        from arq import create_pool
        from arq.worker import create_worker

        from webhook_guard.queues.arq import WorkerSettings, dumps, loads

        pool = await create_pool(
            self.queue.settings,
            job_serializer=dumps,
            job_deserializer=loads,
            default_queue_name=self.queue.queue_name,
        )
        deadline = time.monotonic() + limit
        try:
            while True:
                worker = create_worker(
                    WorkerSettings,
                    redis_pool=pool,
                    queue_name=self.queue.queue_name,
                    burst=True,
                    max_burst_jobs=1,
                    handle_signals=False,
                    poll_delay=0.05,
                )
                await worker.main()
                if done():
                    return
                assert time.monotonic() < deadline, "the arq worker did not get there in time"
                await asyncio.sleep(0.05)
        finally:
            await pool.aclose()


# -- harnesses -----------------------------------------------------------------------------


class Harness:
    """One engine on one broker, for one test: its queues, its worker, its cleanup."""

    name: ClassVar[str]
    engine: ClassVar[str]  # BrokerQueue.engine, and the URL scheme
    requires: ClassVar[tuple[str, ...]]  # imported (or skipped) when a test starts
    missing: ClassVar[str | None] = None  # the skip reason when they are not installed
    stores: ClassVar[tuple[str, ...]] = ("sqlite",)  # the stores the whole suite runs it with
    usable_stores: ClassVar[tuple[str, ...]] = ("sqlite",)  # every store it can be given
    restartable: ClassVar[bool] = False  # its broker can be a Redis of the test's own
    logs_misses: ClassVar[bool] = True  # logs "no Guard for endpoint" to webhook_guard.queues
    early_by: ClassVar[float] = 0.005  # how early a delayed retry may start (ms rounding)
    own_queue: ClassVar[bool] = True  # ?queue=<fresh name>, else its default queue

    def __init__(self, tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.store = store
        self.monkeypatch = monkeypatch
        self.queue_name = f"wg_test_{uuid.uuid4().hex[:12]}" if self.own_queue else "webhook_guard"
        self.queues: list[BrokerQueue] = []
        self._shared = False
        self._schemas = contextlib.ExitStack()  # the PostgreSQL store's schema, dropped after
        self._pg_schema = ""

    # Lifecycle: nothing is imported or required until a test starts the harness.

    def start(self) -> None:
        for module in self.requires:
            pytest.importorskip(module, reason=self.missing)
        if self.store == "redis":
            self.use_shared_broker()
        elif self.store == "postgres":  # ?store=postgresql://...: a fresh schema per test
            require_postgres()
            self._pg_schema = self._schemas.enter_context(postgres_schema("engine"))
        else:  # no ?store=: the SQLite store at WEBHOOK_GUARD_DB, as a single host runs it
            self.monkeypatch.setenv("WEBHOOK_GUARD_DB", str(self.tmp_path / "store.db"))

    def stop(self) -> None:
        for queue in self.queues:
            with contextlib.suppress(Exception):
                queue.close()
            dispose = getattr(queue.store, "dispose", None)
            if callable(dispose):
                dispose()
        self._schemas.close()
        if self._shared:
            self.clean_broker()

    def use_shared_broker(self) -> None:
        """The machine's Redis or RabbitMQ: required (skip or fail), then emptied."""
        if not self._shared:
            self.require_broker()
            self.clean_broker()
            self._shared = True

    # URLs, queues, guards.

    @property
    def store_url(self) -> str:
        """This test's SQLite file (its path, as ``?store=`` and ``open_store`` take it), or
        its PostgreSQL schema's URL (quoted, as a query value must be)."""
        if self.store == "postgres":
            return quote(postgres_url(self._pg_schema), safe="")
        return str(self.tmp_path / "store.db")

    def broker_url(self, port: int | None = None) -> str:
        """The shared broker's URL, or that of a broker of the test's own on ``port``."""
        raise NotImplementedError

    def queue_url(self, port: int | None = None) -> str:
        """The URL a user would set: this test's queue name and store, on the shared broker
        (or on ``port``)."""
        if port is None:
            self.use_shared_broker()
        broker = self.broker_url(port)
        options = [f"queue={self.queue_name}"] if self.own_queue else []
        options += [f"store={self.store_url}"] if self.store in ("redis", "postgres") else []
        return self.engine_url(broker) + ("?" + "&".join(options) if options else "")

    def engine_url(self, broker: str) -> str:
        return f"{self.engine}+{broker}"

    def open(self, port: int | None = None) -> Any:
        queue = open_queue(self.queue_url(port))
        assert isinstance(queue, BrokerQueue) and queue.engine == self.engine
        expected = {"redis": "RedisStore", "postgres": "PostgresQueue"}.get(
            self.store, "SQLiteQueue"
        )
        assert type(queue.store).__name__ == expected
        self.queues.append(queue)
        return queue

    def guard(
        self,
        handler: Handler,
        *,
        port: int | None = None,
        endpoint: str | None = None,
        retry: RetryPolicy = POLICY,
    ) -> Guard:
        guard = Guard(
            SECRET,
            queue=self.open(port),
            endpoint=endpoint or f"{self.engine}-{uuid.uuid4().hex[:8]}",
            worker="external",
            retry=retry,
        )
        guard.add_handler(handler)
        return guard

    # What differs by engine.

    def require_broker(self) -> None:
        raise NotImplementedError

    def clean_broker(self) -> None:
        raise NotImplementedError

    def worker(self, queue: Any) -> contextlib.AbstractContextManager[Worker]:
        """The engine's real worker, in this process, consuming ``queue``."""
        raise NotImplementedError

    def redeliver_quickly(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A delivery the worker cannot run now (no Guard) comes back in under a second."""
        monkeypatch.setattr(f"webhook_guard.queues.{self.engine}.REDELIVER_SECONDS", 0.3)

    def own_broker(self) -> OwnRedis:
        raise NotImplementedError(f"{self.name} cannot run on a broker of the test's own")

    def check_broker_holds(self, queue: Any, delivery_id: str) -> None:
        """Where the broker can be inspected outside the worker: the first attempt's message
        is still there."""


class OnRedis(Harness):
    """The broker is a DB of the machine's Redis, or a redis-server the test starts itself."""

    broker_db: ClassVar[int]
    store_db: ClassVar[int]
    usable_stores = ("sqlite", "redis", "postgres")
    restartable = True

    @property
    def store_url(self) -> str:
        return f"{SHARED_REDIS}/{self.store_db}" if self.store == "redis" else super().store_url

    def broker_url(self, port: int | None = None) -> str:
        return f"redis://127.0.0.1:{port}/0" if port else f"{SHARED_REDIS}/{self.broker_db}"

    def require_broker(self) -> None:
        require_redis()

    def clean_broker(self) -> None:
        import redis

        for db in sorted({self.broker_db, self.store_db}):
            redis.Redis(db=db).flushdb()

    def own_broker(self) -> OwnRedis:
        return OwnRedis()


class OnRabbitMQ(Harness):
    """The broker is the machine's RabbitMQ; each test declares queues of its own name."""

    vhost: ClassVar[str]  # "/" as the engine's URL spells it

    def broker_url(self, port: int | None = None) -> str:
        return f"amqp://guest:guest@127.0.0.1:{port or 5672}/{self.vhost}"

    def require_broker(self) -> None:
        require_rabbitmq()


class Celery(Harness):
    engine = "celery"

    def open(self, port: int | None = None) -> Any:
        queue = super().open(port)
        # Only so the embedded worker's event loop wakes every second and stops quickly.
        queue.app.conf.broker_heartbeat = 0
        return queue

    @contextlib.contextmanager
    def worker(self, queue: Any) -> Iterator[Worker]:
        """``celery.contrib.testing.worker.start_worker`` (pool ``solo``) in a thread."""
        from celery.contrib.testing.worker import start_worker

        with start_worker(
            queue.app,
            pool="solo",
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ):
            yield Polling()


class CeleryRedis(Celery, OnRedis):
    name = "celery+redis"
    requires = ("celery", "redis")
    broker_db = store_db = 13


class CeleryAMQP(Celery, OnRabbitMQ):
    name = "celery+amqp"
    requires = ("celery",)
    vhost = "/"

    def clean_broker(self) -> None:
        from kombu import Connection

        with Connection(self.broker_url()) as conn:
            channel = conn.default_channel
            with contextlib.suppress(Exception):
                channel.queue_delete(self.queue_name)
            with contextlib.suppress(Exception):
                channel.exchange_delete(self.queue_name)


class Dramatiq(Harness):
    engine = "dramatiq"

    @contextlib.contextmanager
    def worker(self, queue: Any) -> Iterator[Worker]:
        """``dramatiq.Worker`` (one worker thread) on the queue's own broker."""
        from dramatiq import Worker as DramatiqWorker

        worker = DramatiqWorker(queue.broker, worker_timeout=100, worker_threads=1)
        worker.start()
        try:
            yield Polling()
        finally:
            worker.stop()


class DramatiqRedis(Dramatiq, OnRedis):
    name = "dramatiq+redis"
    requires = ("dramatiq", "redis")
    broker_db = store_db = 14


class DramatiqAMQP(Dramatiq, OnRabbitMQ):
    name = "dramatiq+amqp"
    requires = ("dramatiq", "pika")
    vhost = "%2F"

    def clean_broker(self) -> None:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.broker_url()))
        try:
            channel = connection.channel()
            for queue_name in (self.queue_name, f"{self.queue_name}.DQ", f"{self.queue_name}.XQ"):
                channel.queue_delete(queue_name)
        finally:
            connection.close()


class OnRedisDefaultQueue(OnRedis):
    """RQ and arq: the engine's default queue name, in a broker DB of their own (10, flushed),
    and the Redis store in DB 11; ``rq://`` and ``arq://`` URLs name Redis without ``+redis``."""

    stores = ("sqlite", "redis")
    own_queue = False
    broker_db, store_db = 10, 11

    def engine_url(self, broker: str) -> str:
        return f"{self.engine}://{broker.removeprefix('redis://')}"


class RQ(OnRedisDefaultQueue):
    name = engine = "rq"
    requires = ("rq",)
    missing = "RQ is not installed: pip install 'webhook-guard[rq]'"
    logs_misses = False  # a job that cannot run now fails; RQ logs that through its own logger
    early_by = 0.0  # RQ's whole seconds are rounded up: a retry is never early

    @contextlib.contextmanager
    def worker(self, queue: Any) -> Iterator[Worker]:
        bursts = RQBursts(queue)
        try:
            yield bursts
        finally:
            bursts.connection.close()

    def redeliver_quickly(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from rq import Retry

        monkeypatch.setattr("webhook_guard.queues.rq.REDELIVER", Retry(max=5, interval=1))

    def check_broker_holds(self, queue: Any, delivery_id: str) -> None:
        assert queue.connection.exists(f"rq:job:{delivery_id}-1"), "RQ still has the job"


class Arq(OnRedisDefaultQueue):
    name = engine = "arq"
    requires = ("arq",)
    missing = "arq needs redis<6, so it is not installed here: it runs in .venv-arq (make test-arq)"

    @contextlib.contextmanager
    def worker(self, queue: Any) -> Iterator[Worker]:
        yield ArqBursts(queue)

    def check_broker_holds(self, queue: Any, delivery_id: str) -> None:
        import redis

        s = queue.settings
        client = redis.Redis(host=s.host, port=s.port, db=s.database)
        try:
            assert client.zscore(queue.queue_name, f"{delivery_id}:1") is not None
        finally:
            client.close()


PROCRASTINATE_DB = "webhook_guard_procrastinate"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


class ProcrastinateWorker(Polling):
    """procrastinate's real worker (``App.run_worker_async``), on an event loop in a thread of
    this process, listening to the queue's name; cancelled at the end, as SIGTERM would."""

    def __init__(self, queue: Any) -> None:
        import procrastinate

        from webhook_guard.queues import procrastinate as engine

        self.app = engine.app.with_connector(procrastinate.PsycopgConnector(conninfo=queue.dsn))
        self.queue_name = queue.queue_name
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.started.wait(30), "the procrastinate worker did not start"

    def _run(self) -> None:
        async def work() -> None:
            async with self.app.open_async():
                self.started.set()
                await self.app.run_worker_async(
                    queues=[self.queue_name],
                    install_signal_handlers=False,
                    fetch_job_polling_interval=0.2,
                    delete_jobs="never",
                )

        self.task = self.loop.create_task(work())
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)
        self.loop.close()

    def stop(self) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(30)


class Procrastinate(Harness):
    """procrastinate's tables in a database of their own on the machine's PostgreSQL (created,
    and its schema applied, once); each test defers to a queue of its own name."""

    name = engine = "procrastinate"
    requires = ("procrastinate",)
    missing = "procrastinate is not installed: pip install 'webhook-guard[procrastinate]'"
    logs_misses = False  # a job that cannot run now fails; procrastinate logs it itself

    def broker_url(self, port: int | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{port or 5432}/{PROCRASTINATE_DB}"

    def require_broker(self) -> None:
        require_postgres()
        procrastinate_schema(self.broker_url())

    def clean_broker(self) -> None:
        import psycopg

        with psycopg.connect(self.broker_url(), autocommit=True) as conn:
            conn.execute("DELETE FROM procrastinate_jobs WHERE queue_name = %s", (self.queue_name,))

    @contextlib.contextmanager
    def worker(self, queue: Any) -> Iterator[Worker]:
        worker = ProcrastinateWorker(queue)
        try:
            yield worker
        finally:
            worker.stop()

    def redeliver_quickly(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import procrastinate

        from webhook_guard.queues import procrastinate as engine

        quick = procrastinate.RetryStrategy(max_attempts=30, wait=1)
        monkeypatch.setattr(engine.process, "retry_strategy", quick)

    def check_broker_holds(self, queue: Any, delivery_id: str) -> None:
        import psycopg

        with psycopg.connect(self.broker_url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s"
                " AND args -> 'envelope' ->> 'id' = %s",
                (self.queue_name, delivery_id),
            ).fetchone()
        assert row is not None and row[0] >= 1, "procrastinate still has the job"


def procrastinate_schema(dsn: str) -> None:
    """The test database with procrastinate's schema, made once (as ``procrastinate schema
    --apply`` makes it)."""
    import procrastinate
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PROCRASTINATE_DB,)
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{PROCRASTINATE_DB}"')
    with psycopg.connect(dsn, autocommit=True) as conn:
        applied = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
    if applied is None or applied[0] is None:
        app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=dsn))
        with app.open():
            app.schema_manager.apply_schema()


class DjangoTasksWorker(Polling):
    """django-tasks-db's real worker loop (the ``Worker`` that ``manage.py db_worker`` runs),
    in a thread of this process, on the queue's backend and queue name; stopped at the end as
    its SIGTERM handler stops it (``running = False``), between two tasks."""

    def __init__(self, queue: Any) -> None:
        from django_tasks_db.management.commands.db_worker import Worker as DBWorker

        self.worker = DBWorker(
            queue_names=[queue.queue_name],
            interval=0.05,
            batch=False,
            backend_name=queue.backend,
            startup_delay=False,
            max_tasks=None,
            worker_id=f"test-{uuid.uuid4().hex[:12]}",
            excluded_queue_names=[],
        )
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from django.db import connections

        try:
            self.worker.run()
        except BaseException as error:  # reported by until()
            self.failure = error
        finally:
            connections.close_all()  # this thread's own

    def until(self, done: Callable[[], bool], limit: float = LIMIT) -> None:
        assert wait_until(lambda: done() or self.failure is not None, limit), (
            "the worker did not get there in time"
        )
        assert self.failure is None, f"the db_worker loop failed: {self.failure!r}"

    def stop(self) -> None:
        self.worker.running = False
        self.thread.join(30)


class DjangoTasks(Harness):
    """Django's tasks framework with django-tasks-db's database backend, its table in a
    PostgreSQL database of the tests' own (``tests/adapters/transports_django.py`` configures
    Django for the whole process: the ``default`` TASKS backend, its database and a router);
    created and migrated once, each test's tasks deleted after. ``port`` points the backend's
    database at another port for the test's duration."""

    name = engine = "django-tasks"
    requires = ("django_tasks", "django_tasks_db")
    missing = "django-tasks is not installed: pip install 'webhook-guard[django-tasks]'"
    usable_stores = ("sqlite", "postgres")

    def __init__(self, tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(tmp_path, store, monkeypatch)
        self._router_database: str | None = None

    def start(self) -> None:
        super().start()
        from tests.adapters.transports_django import configure

        configure()

    def stop(self) -> None:
        super().stop()
        if self._router_database is not None:
            from tests.adapters.transports_django import TasksRouter

            TasksRouter.database = self._router_database

    def broker_url(self, port: int | None = None) -> str:
        if port is not None:
            self._use_port(port)
        return "default"

    def engine_url(self, broker: str) -> str:
        return f"{self.engine}://{broker}"

    def _use_port(self, port: int) -> None:
        """The backend's database on ``port`` (another alias, the same database otherwise)."""
        from django.db import connections

        from tests.adapters.transports_django import TASKS_DATABASE, TasksRouter

        alias = f"{TASKS_DATABASE}_{port}"
        if alias not in connections.settings:
            settings = connections.settings[TASKS_DATABASE]
            connections.settings[alias] = {**settings, "PORT": str(port)}
        if self._router_database is None:
            self._router_database = TasksRouter.database
        TasksRouter.database = alias

    def require_broker(self) -> None:
        require_postgres()
        django_tasks_database()

    def clean_broker(self) -> None:
        from django.db import connections
        from django_tasks_db.models import DBTaskResult

        from tests.adapters.transports_django import TASKS_DATABASE

        DBTaskResult.objects.using(TASKS_DATABASE).filter(queue_name=self.queue_name).delete()
        connections[TASKS_DATABASE].close()

    @contextlib.contextmanager
    def worker(self, queue: Any) -> Iterator[Worker]:
        worker = DjangoTasksWorker(queue)
        try:
            yield worker
        finally:
            worker.stop()

    def redeliver_quickly(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("webhook_guard.queues.django_tasks.REDELIVER_SECONDS", 0.3)

    def check_broker_holds(self, queue: Any, delivery_id: str) -> None:
        from django_tasks_db.models import DBTaskResult

        from tests.adapters.transports_django import TASKS_DATABASE

        tasks = DBTaskResult.objects.using(TASKS_DATABASE).filter(queue_name=self.queue_name)
        ids = [task.args_kwargs["args"][0]["id"] for task in tasks]
        assert delivery_id in ids, "the tasks table still has the task"


def django_tasks_database() -> None:
    """The tests' database for the tasks backend, created and migrated once (as
    ``manage.py migrate django_tasks_database --database ...`` migrates it)."""
    import psycopg
    from django.core.management import call_command
    from django.db import connections

    from tests.adapters.transports_django import TASKS_DATABASE, TASKS_DB_NAME

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (TASKS_DB_NAME,)
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{TASKS_DB_NAME}"')
    if not _migrated:
        call_command("migrate", "django_tasks_database", database=TASKS_DATABASE, verbosity=0)
        connections[TASKS_DATABASE].close()
        _migrated.append(True)


_migrated: list[bool] = []


HARNESSES: dict[str, type[Harness]] = {
    h.name: h
    for h in (
        CeleryRedis,
        CeleryAMQP,
        DramatiqRedis,
        DramatiqAMQP,
        RQ,
        Arq,
        Procrastinate,
        DjangoTasks,
    )
}


@contextlib.contextmanager
def running(
    name: str, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """The harness ``name`` with ``store`` ("sqlite", "redis" or "postgres"), started for one
    test."""
    harness = HARNESSES[name](tmp_path, store, monkeypatch)
    try:
        harness.start()
        yield harness
    finally:
        harness.stop()


# -- an engine's worker CLI in a fresh process ---------------------------------------------

E2E_APP = """
import json, os
from webhook_guard import Guard, RetryPolicy
from webhook_guard.queues import open_queue

guard = Guard(
    {secret!r},
    queue=open_queue(os.environ["WEBHOOK_GUARD_QUEUE"]),
    endpoint="e2e",
    worker="external",
    retry=RetryPolicy(max_attempts=3, base_seconds=0.2, cap_seconds=0.5),
)


@guard.on()
def handle(delivery):
    if delivery.attempt <= json.loads(delivery.body).get("fail", 0):
        raise RuntimeError("asked to fail")
    with open(os.environ["E2E_LOG"], "a") as log:
        log.write(json.dumps([delivery.id, delivery.attempt, delivery.body_sha256]) + "\\n")
"""


# A Guard module (endpoint "kill9") whose handler logs its start to runs.log, blocks while the
# file SLOW exists in the current directory, then logs "done": a worker to kill mid-handler.
STALL_APP = """
import os, time
from webhook_guard import Guard
from webhook_guard.queues import open_queue

guard = Guard({secret!r}, queue=open_queue(os.environ["WEBHOOK_GUARD_QUEUE"]), endpoint="kill9",
              worker="external")


@guard.on()
def handle(delivery):
    with open("runs.log", "a") as log:
        log.write(f"start {{delivery.id}} {{delivery.attempt}}\\n")
    while os.path.exists("SLOW"):
        time.sleep(0.05)
    with open("runs.log", "a") as log:
        log.write(f"done {{delivery.id}}\\n")
"""


def check_worker_cli(harness: Harness, command: list[str], *, pythonpath: bool = True) -> None:
    """Run ``command`` (the engine's documented worker CLI) in a fresh process, with
    WEBHOOK_GUARD_QUEUE set to the harness's URL and WEBHOOK_GUARD_APP naming a Guard module:
    it must run a delivery, and one that fails once on its second attempt. The Guard module is
    in the worker's current directory; ``pythonpath=False`` runs it with no PYTHONPATH at all,
    as a user runs it from their project directory."""
    url = harness.queue_url()
    tmp_path = harness.tmp_path
    (tmp_path / "e2e_app.py").write_text(E2E_APP.format(secret=SECRET))
    log = tmp_path / "processed.jsonl"
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        **({"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"} if pythonpath else {}),
        "PYTHONUNBUFFERED": "1",
        "WEBHOOK_GUARD_QUEUE": url,
        "WEBHOOK_GUARD_APP": "e2e_app:guard",
        "E2E_LOG": str(log),
    }
    sender = Guard(SECRET, queue=harness.open(), endpoint="e2e", worker="external")
    ok, retried = b'{"n": 1}', b'{"fail": 1}'
    ids = [accepted_id(receive(sender, body)) for body in (ok, retried)]
    worker = spawn(command, env, tmp_path / "worker.log", cwd=tmp_path)
    try:
        ran = wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 2, LIMIT)
        assert ran, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        stop(worker)
    runs = sorted(tuple(json.loads(line)) for line in log.read_text().splitlines())
    assert runs == sorted(
        [(ids[0], 1, sha256(ok).hexdigest()), (ids[1], 2, sha256(retried).hexdigest())]
    )
    first, second = (store_of(sender).get(i) for i in ids)
    assert first.status == "processed"
    assert [a.outcome for a in second.attempt_log] == ["failed", "processed"]
