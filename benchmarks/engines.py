"""Broker-backed queues: our enqueue vs each engine's bare enqueue, and each engine's worker drain
vs the embedded SQLite worker, in the same run.

    .venv/bin/python benchmarks/engines.py                    # every engine importable here
    .venv-arq/bin/python benchmarks/engines.py --engines arq  # arq pins redis<6: its own venv

Engines: ``celery+redis``, ``celery+amqp``, ``rq``, ``dramatiq+redis``, ``dramatiq+amqp``, ``arq``
(default: those whose modules import in this interpreter). Needs Redis on 127.0.0.1:6379 (DB 15,
which must be empty: it is emptied between samples and flushed at the end) and, for the ``+amqp``
engines, RabbitMQ on 127.0.0.1:5672 (queues ``wg_bench_*``, purged between samples and deleted at
the end).

Part 1, enqueue (single client, sequential, one 1 KiB signed delivery per call, a distinct
id each time). Per engine, interleaved (every repetition visits every row in a rotated order,
reversed on every other one), medians:

- *bare*: the engine's own call with the same JSON envelope (``Delivery.to_envelope()``, built
  before the clock starts), on the same app/broker/connection as ours: Celery ``send_task``, RQ
  ``Queue.enqueue``, Dramatiq ``actor.send``, arq ``await enqueue_job`` on an asyncio loop;
- *ours*: ``queue.enqueue(delivery)`` of our ``BrokerQueue`` (``store.reserve`` + building the
  envelope + ``publish``), with the SQLite store (``durability="process"``, a fresh file per
  sample), with the Redis store (DB 15), and with a store that does nothing (diagnostic: our
  publish path alone, so that "x bare" splits into store cost and publish overhead). For arq also
  ``await queue.aenqueue(delivery)`` (the ASGI path) on the same loop as the bare call;
- for ``+amqp``: the bare call on an app/broker with the engine's defaults (no publisher
  confirms; ours turns them on), to show what confirms cost;
- references, once per repetition: redis-py ``LPUSH`` of 1 KiB (one round trip), each store's
  ``reserve`` alone, and ``Delivery.to_envelope()``.

Redis commands per enqueue come from ``INFO stats`` before/after an untimed pass (server-wide:
another client of the same Redis inflates it).

Part 2, drain: a backlog of ``--drain-n`` no-op deliveries enqueued through our queue (SQLite
store, process durability), then drained by the engine's real worker in this process, one
worker thread, as ``tests/queues/engines.py`` runs it (Celery ``start_worker`` pool ``solo``,
``dramatiq.Worker`` with 1 thread, RQ ``SimpleWorker`` in burst mode, arq ``Worker`` in burst
mode with ``WorkerSettings``) running ``process_envelope`` (the store records both ends of every
attempt). Against: ``Worker(guard).drain()`` of the embedded SQLite queue (process durability)
on the same N, and the engine's bare drain of a no-op task on the same app/broker. The rate is
(N - 1) / (last handler call - first handler call): steady state, without worker start-up and
shutdown (whole time from worker start shown apart). A sample still short of N after
``--drain-timeout`` (20 s) is stopped and reported as such (Celery's ``solo`` pool on RabbitMQ
sometimes stalls on a backlog). For arq also with ``poll_delay=0.05`` (the tests' setting;
``WorkerSettings`` keeps arq's 0.5 s), as a diagnostic.

With ``--pin`` (default when there are >= 2 CPUs) this process runs on CPU 1 only, as
``enqueue_drain.py`` does; redis-server and RabbitMQ are not ours and stay where they are (their
CPU at the start is printed). Other processes' CPU is counted per sample from ``/proc``, with
the brokers' own CPU apart (they work for us).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from _common import (
    BENCH_EVENT,
    BENCH_SECRET,
    _proc_table,
    ack_body,
    fs_type,
    loadavg,
    machine_line,
    md_table,
    median,
    paired_ratio,
    rotated,
    signed_ack_request,
    versions,
    yes_no,
)

from webhook_guard import Guard, SQLiteQueue
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.processing import AttemptResult
from webhook_guard.core.queue import Enqueued, EnqueueResult, Rejection
from webhook_guard.worker import Worker

SECRET = BENCH_SECRET
EVENT = BENCH_EVENT
BODY = ack_body()
ENGINES = ("celery+redis", "celery+amqp", "rq", "dramatiq+redis", "dramatiq+amqp", "arq")
REQUIRES = {
    "celery+redis": ("celery", "redis"),
    "celery+amqp": ("celery",),
    "rq": ("rq",),
    "dramatiq+redis": ("dramatiq", "redis"),
    "dramatiq+amqp": ("dramatiq", "pika"),
    "arq": ("arq",),
}
TARGET = 1.10
PREFIX = "wg_bench"
BROKER_COMMANDS = ("redis-server", "beam.smp", "erl_child_setup", "epmd", "inet_gethost")
ENGINE_PACKAGES = ("celery", "kombu", "amqp", "rq", "dramatiq", "pika", "redis", "hiredis", "arq")


def deliveries(guard: Guard, n: int) -> list[Delivery]:
    """``n`` new deliveries: distinct signed bodies (the dedupe key is the body's sha256)."""
    return [guard.admit("POST", *signed_ack_request()) for _ in range(n)]


class NoopStore:
    """A delivery store that stores nothing (diagnostic: the publish path alone)."""

    def reserve(self, delivery: Delivery, engine: str) -> EnqueueResult:
        return EnqueueResult(Enqueued.NEW, delivery.id)

    def release(self, delivery: Delivery) -> None:
        pass

    def attempt_started(self, delivery_id: str, attempt: int) -> None:
        pass

    def attempt_finished(self, delivery_id: str, attempt: int, result: AttemptResult) -> None:
        pass

    def load(self, delivery_id: str) -> Delivery | None:
        return None

    def mark_replayed(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> list[str]:
        return []

    def record_rejection(self, rejection: Rejection) -> None:
        pass

    async def arecord_rejection(self, rejection: Rejection) -> None:
        pass


class Recorder:
    """A no-op handler that notes when it ran first and last; ``done`` is set at ``target``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset(0)

    def reset(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first = self.last = 0.0
        self.done = threading.Event()

    def __call__(self, *args: Any) -> None:
        now = time.perf_counter()
        with self._lock:
            if not self.count:
                self.first = now
            self.last = now
            self.count += 1
            if self.count >= self.target:
                self.done.set()

    @property
    def rate(self) -> float:
        span = self.last - self.first
        return (self.count - 1) / span if span > 0 and self.count > 1 else float("nan")


NOOP = Recorder()  # the bare no-op tasks of every engine report here


def rq_noop(envelope: dict[str, Any]) -> None:
    """RQ's bare no-op job. RQ refuses functions of ``__main__``, so it is enqueued as
    ``engines.rq_noop`` (this file imported again by RQ's worker) and reports to the recorder
    of the running script."""
    sys.modules["__main__"].NOOP(envelope)


def celery_noop(envelope: dict[str, Any]) -> None:
    NOOP(envelope)


def dramatiq_noop(envelope: dict[str, Any]) -> None:
    NOOP(envelope)


async def arq_noop(ctx: dict[str, Any], envelope: dict[str, Any]) -> None:
    NOOP(envelope)


# -------------------------------------------------------------------------- other processes


class Foreign:
    """CPU used by other processes over a span, from two ``/proc`` snapshots (no thread): the
    brokers' (they work for us) and everyone else's, in cores."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.before = _proc_table()

    def stop(self) -> tuple[float, float, dict[str, float]]:
        after = _proc_table()
        wall = max(time.monotonic() - self.t0, 1e-9)
        me = os.getpid()
        broker = other = 0.0
        by_command: dict[str, float] = {}
        for pid, (_, cpu, comm) in after.items():
            if pid == me:
                continue
            delta = cpu - (self.before[pid][1] if pid in self.before else 0.0)
            if delta <= 0:
                continue
            if comm in BROKER_COMMANDS:
                broker += delta
            else:
                other += delta
                by_command[comm] = by_command.get(comm, 0.0) + delta
        return broker / wall, other / wall, by_command


def placement(command: str) -> str:
    """Where a process named ``command`` ran last and may run (not ours: only looked at)."""
    found = []
    for pid, (_, _, comm) in _proc_table().items():
        if comm != command:
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                cpu = f.read().rsplit(")", 1)[1].split()[36]
            allowed = sorted(os.sched_getaffinity(pid))
        except (OSError, IndexError):
            continue
        found.append(f"pid {pid} last on CPU {cpu}, allowed {allowed}")
    return "; ".join(found) or "not found"


# -------------------------------------------------------------------------- engines


class Engine:
    """One engine on one broker: our queue (its store swapped per sample), its bare enqueue,
    its worker."""

    name: str
    broker: str  # "redis" or "amqp"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.redis_url = f"{args.redis}/{args.db}"
        self.queue_name = f"{PREFIX}_{self.name.replace('+', '_')}"
        self.queue: Any = self.make_queue()
        self.handler = Recorder()
        self.guard = Guard(
            SECRET, queue=self.queue, endpoint=f"bench-{self.name}", worker="external"
        )
        self.guard.add_handler(self.handler)

    def make_queue(self) -> Any:
        raise NotImplementedError

    def bare(self, envelopes: list[dict[str, Any]]) -> float:
        """Time the engine's own enqueue of each envelope; seconds."""
        raise NotImplementedError

    def bare_defaults(self, envelopes: list[dict[str, Any]]) -> float:
        raise NotImplementedError

    def ours(self, items: list[Delivery]) -> float:
        enqueue = self.queue.enqueue
        t0 = time.perf_counter()
        for d in items:
            enqueue(d)
        return time.perf_counter() - t0

    def ours_async(self, items: list[Delivery]) -> float:
        raise NotImplementedError

    def rows(self) -> list[str]:
        rows = ["bare", "ours, no-op store", "ours, SQLite store", "ours, Redis store"]
        if self.broker == "amqp":
            rows.insert(1, "bare, engine defaults (no confirms)")
        return rows

    def purge(self) -> None:
        """Empty this engine's queue (untimed, between samples); Redis DBs are emptied apart."""

    def delete(self) -> None:
        """Remove what this engine declared on RabbitMQ (end of run)."""

    def worker(self, fast: bool = False) -> contextlib.AbstractContextManager[None]:
        """The engine's worker in this process while the block runs (or until it is done);
        ``fast``: with the tests' quicker polling, where the engine polls (arq)."""
        raise NotImplementedError

    def send_noop(self, envelopes: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def drain_kinds(self) -> list[str]:
        return ["ours", "bare"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.queue.close()


class Celery(Engine):
    def broker_url(self) -> str:
        if self.broker == "redis":
            return self.redis_url
        return str(self.args.amqp).rstrip("/") + "//"

    def make_queue(self) -> Any:
        from webhook_guard.queues.celery import CeleryQueue

        queue = CeleryQueue(self.broker_url(), NoopStore(), queue_name=self.queue_name)
        queue.app.conf.broker_heartbeat = 0  # as the tests: the embedded worker stops quickly
        queue.app.task(name="wg_bench.noop", shared=False)(celery_noop)
        self.default_app: Any = None
        return queue

    def bare(self, envelopes: list[dict[str, Any]]) -> float:
        from webhook_guard.queues.celery import TASK_NAME

        send, q = self.queue.app.send_task, self.queue_name
        t0 = time.perf_counter()
        for e in envelopes:
            send(TASK_NAME, args=[e], queue=q)
        return time.perf_counter() - t0

    def bare_defaults(self, envelopes: list[dict[str, Any]]) -> float:
        import celery

        from webhook_guard.queues.celery import TASK_NAME

        if self.default_app is None:
            self.default_app = celery.Celery(
                "wg_bench", broker=self.broker_url(), set_as_current=False
            )
            self.default_app.conf.task_ignore_result = True
        send, q = self.default_app.send_task, self.queue_name
        t0 = time.perf_counter()
        for e in envelopes:
            send(TASK_NAME, args=[e], queue=q)
        return time.perf_counter() - t0

    def purge(self) -> None:
        if self.broker == "amqp":
            with self.queue.app.connection_for_write() as conn, contextlib.suppress(Exception):
                conn.default_channel.queue_purge(self.queue_name)

    def delete(self) -> None:
        if self.broker == "amqp":
            with self.queue.app.connection_for_write() as conn:
                channel = conn.default_channel
                with contextlib.suppress(Exception):
                    channel.queue_delete(self.queue_name)
                with contextlib.suppress(Exception):
                    channel.exchange_delete(self.queue_name)

    def send_noop(self, envelopes: list[dict[str, Any]]) -> None:
        for e in envelopes:
            self.queue.app.send_task("wg_bench.noop", args=[e], queue=self.queue_name)

    @contextlib.contextmanager
    def worker(self, fast: bool = False) -> Iterator[None]:
        from celery.contrib.testing.worker import start_worker

        with start_worker(
            self.queue.app,
            pool="solo",
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ):
            yield

    def close(self) -> None:
        super().close()
        if self.default_app is not None:
            self.default_app.close()


class CeleryRedis(Celery):
    name, broker = "celery+redis", "redis"


class CeleryAMQP(Celery):
    name, broker = "celery+amqp", "amqp"


class Dramatiq(Engine):
    def broker_url(self) -> str:
        if self.broker == "redis":
            return self.redis_url
        return str(self.args.amqp).rstrip("/") + "/%2F"

    def make_queue(self) -> Any:
        import dramatiq

        from webhook_guard.queues.dramatiq import DramatiqQueue, make_broker

        queue = DramatiqQueue(
            make_broker(self.broker_url()), NoopStore(), queue_name=self.queue_name
        )
        declare = dramatiq.actor(
            actor_name="wg_bench_noop",
            queue_name=self.queue_name,
            broker=queue.broker,
            max_retries=0,
        )
        self.noop_actor = declare(dramatiq_noop)
        self.default_actor: Any = None
        return queue

    def bare(self, envelopes: list[dict[str, Any]]) -> float:
        send = self.queue.actor.send
        t0 = time.perf_counter()
        for e in envelopes:
            send(e)
        return time.perf_counter() - t0

    def bare_defaults(self, envelopes: list[dict[str, Any]]) -> float:
        import dramatiq
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        from webhook_guard.queues.dramatiq import ACTOR_NAME

        if self.default_actor is None:
            broker = RabbitmqBroker(url=self.broker_url())  # confirm_delivery=False: the default
            declare = dramatiq.actor(
                actor_name=ACTOR_NAME, queue_name=self.queue_name, broker=broker, max_retries=0
            )
            self.default_actor = declare(dramatiq_noop)
        send = self.default_actor.send
        t0 = time.perf_counter()
        for e in envelopes:
            send(e)
        return time.perf_counter() - t0

    def purge(self) -> None:
        if self.broker == "amqp":
            self.queue.broker.flush(self.queue_name)

    def delete(self) -> None:
        if self.broker != "amqp":
            return
        import pika  # type: ignore[import-untyped]

        connection = pika.BlockingConnection(pika.URLParameters(self.broker_url()))
        try:
            channel = connection.channel()
            for name in (self.queue_name, f"{self.queue_name}.DQ", f"{self.queue_name}.XQ"):
                channel.queue_delete(name)
        finally:
            connection.close()

    def send_noop(self, envelopes: list[dict[str, Any]]) -> None:
        for e in envelopes:
            self.noop_actor.send(e)

    @contextlib.contextmanager
    def worker(self, fast: bool = False) -> Iterator[None]:
        from dramatiq import Worker as DramatiqWorker

        broker = self.queue.broker
        worker = DramatiqWorker(broker, worker_timeout=100, worker_threads=1)
        worker.start()
        try:
            yield
        finally:
            worker.stop()
            # A Worker adds a middleware to the broker and never takes it off: take it off,
            # so the next sample's Worker is the only one the broker knows.
            broker.middleware[:] = [
                m for m in broker.middleware if getattr(m, "worker", None) is not worker
            ]

    def close(self) -> None:
        super().close()
        if self.default_actor is not None:
            with contextlib.suppress(Exception):
                self.default_actor.broker.close()


class DramatiqRedis(Dramatiq):
    name, broker = "dramatiq+redis", "redis"


class DramatiqAMQP(Dramatiq):
    name, broker = "dramatiq+amqp", "amqp"


class RQ(Engine):
    name, broker = "rq", "redis"

    def make_queue(self) -> Any:
        from webhook_guard.queues.rq import RQQueue

        return RQQueue(self.redis_url, NoopStore(), queue_name=self.queue_name)

    def bare(self, envelopes: list[dict[str, Any]]) -> float:
        from webhook_guard.queues.rq import FUNCTION

        enqueue = self.queue.queue.enqueue
        t0 = time.perf_counter()
        for e in envelopes:
            enqueue(FUNCTION, e)
        return time.perf_counter() - t0

    def send_noop(self, envelopes: list[dict[str, Any]]) -> None:
        for e in envelopes:
            self.queue.queue.enqueue("engines.rq_noop", e)

    @contextlib.contextmanager
    def worker(self, fast: bool = False) -> Iterator[None]:
        """``SimpleWorker`` in burst mode, in this thread, as the tests run it: it returns when
        the queue is empty, so the block only checks the result."""
        import redis
        from rq import Queue, SimpleWorker
        from rq.serializers import JSONSerializer

        kwargs = self.queue.connection.connection_pool.connection_kwargs
        connection = redis.Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs["db"])
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            queue = Queue(self.queue_name, connection=connection, serializer=JSONSerializer)
            worker = SimpleWorker([queue], connection=connection, serializer=JSONSerializer)
            worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            connection.close()


class Arq(Engine):
    name, broker = "arq", "redis"

    def make_queue(self) -> Any:
        from arq import create_pool

        from webhook_guard.queues.arq import ArqQueue, dumps, loads

        queue = ArqQueue(self.redis_url, NoopStore(), queue_name=self.queue_name)
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(
            create_pool(
                queue.settings,
                job_serializer=dumps,
                job_deserializer=loads,
                default_queue_name=self.queue_name,
            )
        )
        return queue

    def drain_kinds(self) -> list[str]:
        return ["ours", "bare", "ours, fast poll", "bare, fast poll"]

    def rows(self) -> list[str]:
        aenqueue = [f"ours async (aenqueue), {kind} store" for kind in ("no-op", "SQLite", "Redis")]
        return [*super().rows(), *aenqueue]

    def bare(self, envelopes: list[dict[str, Any]]) -> float:
        from webhook_guard.queues.arq import FUNCTION_NAME

        enqueue, q = self.pool.enqueue_job, self.queue_name

        async def run() -> float:
            t0 = time.perf_counter()
            for e in envelopes:
                await enqueue(FUNCTION_NAME, e, _queue_name=q)
            return time.perf_counter() - t0

        return self.loop.run_until_complete(run())

    def ours_async(self, items: list[Delivery]) -> float:
        aenqueue = self.queue.aenqueue

        async def run() -> float:
            t0 = time.perf_counter()
            for d in items:
                await aenqueue(d)
            return time.perf_counter() - t0

        return self.loop.run_until_complete(run())

    def send_noop(self, envelopes: list[dict[str, Any]]) -> None:
        async def run() -> None:
            for e in envelopes:
                await self.pool.enqueue_job("wg_bench_noop", e, _queue_name=self.queue_name)

        self.loop.run_until_complete(run())

    @contextlib.contextmanager
    def worker(self, fast: bool = False) -> Iterator[None]:
        """arq's ``Worker`` with ``WorkerSettings`` (its defaults: up to ``max_jobs`` 10 jobs
        at once, a poll every 0.5 s), in burst mode: it returns when the queue is empty."""
        from arq.worker import create_worker, func

        from webhook_guard.queues.arq import WorkerSettings

        overrides: dict[str, Any] = {}
        if self.args.arq_max_jobs:
            overrides["max_jobs"] = self.args.arq_max_jobs
        if fast:
            overrides["poll_delay"] = 0.05  # as tests/queues/engines.py runs it

        async def run() -> None:
            # Built on the loop it runs on: arq's Worker keeps the loop current at __init__.
            worker = create_worker(
                WorkerSettings,
                redis_pool=self.pool,
                queue_name=self.queue_name,
                functions=[*WorkerSettings.functions, func(arq_noop, name="wg_bench_noop")],
                burst=True,
                handle_signals=False,
                **overrides,
            )
            await worker.main()

        self.loop.run_until_complete(run())
        yield

    def close(self) -> None:
        super().close()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


CLASSES: dict[str, type[Engine]] = {
    c.name: c for c in (CeleryRedis, CeleryAMQP, RQ, DramatiqRedis, DramatiqAMQP, Arq)
}


def importable(name: str) -> bool:
    for module in REQUIRES[name]:
        try:
            importlib.import_module(module)
        except ImportError:
            return False
    return True


# -------------------------------------------------------------------------- shared state


class Bench:
    """Stores, clients and cleanup shared by every engine of the run."""

    def __init__(self, args: argparse.Namespace, work: str) -> None:
        import redis

        from webhook_guard.stores.redis import RedisStore

        self.args = args
        self.work = work
        self.redis = redis.Redis.from_url(f"{args.redis}/{args.db}")
        self.noop_store = NoopStore()
        self.redis_store = RedisStore(f"{args.redis}/{args.db}", prefix=PREFIX)
        self.ref_guard = Guard(SECRET, queue=NoopQueue(), endpoint="bench-ref", worker="external")

    def sqlite_store(self) -> SQLiteQueue:
        folder = tempfile.mkdtemp(dir=self.work)
        return SQLiteQueue(os.path.join(folder, "store.db"), durability="process")

    def store(self, kind: str) -> Any:
        if kind == "SQLite":
            store = self.sqlite_store()
            store.reserve(self.ref_guard.admit("POST", *signed_ack_request()), "bench")  # schema
            return store
        return self.redis_store if kind == "Redis" else self.noop_store

    def empty_redis(self) -> None:
        """Delete every key of the bench DB but kombu's queue bindings (declared once per
        connection: without them kombu routes nowhere, which is cheaper)."""
        doomed = [
            k for k in self.redis.scan_iter(count=1000) if not k.startswith(b"_kombu.binding")
        ]
        for i in range(0, len(doomed), 500):
            self.redis.delete(*doomed[i : i + 500])

    def done_with(self, store: Any) -> None:
        if isinstance(store, SQLiteQueue):
            store.close()
            shutil.rmtree(os.path.dirname(store.path), ignore_errors=True)


class NoopQueue:
    """Only so that the reference Guard needs no file (it never enqueues)."""

    def enqueue(self, delivery: Delivery) -> EnqueueResult:
        return EnqueueResult(Enqueued.NEW, delivery.id)

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult:
        return self.enqueue(delivery)

    def record_rejection(self, rejection: Rejection) -> None:
        pass

    async def arecord_rejection(self, rejection: Rejection) -> None:
        pass

    def close(self) -> None:
        pass


# -------------------------------------------------------------------------- part 1: enqueue


def sample(bench: Bench, engine: Engine | None, row: str, n: int) -> float:
    """One timed sample of ``row``: seconds per enqueue (inputs built and brokers emptied
    outside the clock)."""
    if engine is None:  # references
        items = deliveries(bench.ref_guard, n)
        if row == "redis-py LPUSH 1 KiB (one round trip)":
            lpush, key = bench.redis.lpush, f"{PREFIX}:lpush"
            t0 = time.perf_counter()
            for _ in items:
                lpush(key, BODY)
            elapsed = time.perf_counter() - t0
        elif row == "Delivery.to_envelope() (CPU only)":
            t0 = time.perf_counter()
            for d in items:
                d.to_envelope()
            elapsed = time.perf_counter() - t0
        else:  # "<kind> store reserve alone"
            alone = bench.store(row.split()[0])
            reserve = alone.reserve
            t0 = time.perf_counter()
            for d in items:
                reserve(d, "bench")
            elapsed = time.perf_counter() - t0
            bench.done_with(alone)
        bench.empty_redis()
        return elapsed / n
    items = deliveries(engine.guard, n)
    store: Any = None
    try:
        if row.startswith("bare"):
            envelopes = [d.to_envelope() for d in items]
            fn = engine.bare_defaults if "defaults" in row else engine.bare
            elapsed = fn(envelopes)
        else:
            store = bench.store(row.rsplit(", ", 1)[1].split()[0])
            engine.queue.store = store
            elapsed = engine.ours_async(items) if "async" in row else engine.ours(items)
    finally:
        engine.queue.store = bench.noop_store
        if store is not None:
            bench.done_with(store)
        engine.purge()
        bench.empty_redis()
    return elapsed / n


REFERENCES = (
    "redis-py LPUSH 1 KiB (one round trip)",
    "SQLite store reserve alone",
    "Redis store reserve alone",
    "Delivery.to_envelope() (CPU only)",
)


def commands_per_enqueue(bench: Bench, engine: Engine | None, row: str, n: int = 100) -> float:
    """Redis commands the server ran per enqueue in an untimed pass (min of 2: server-wide)."""
    found = []
    for _ in range(2):
        before = bench.redis.info("stats")["total_commands_processed"]
        sample(bench, engine, row, n)  # its cleanup runs commands too: counted apart below
        after = bench.redis.info("stats")["total_commands_processed"]
        found.append(after - before)
    # The cleanup (SCAN + DEL, purge) and INFO itself: measured with n=0 deliveries the same way.
    before = bench.redis.info("stats")["total_commands_processed"]
    bench.empty_redis()
    if engine is not None:
        engine.purge()
    overhead = bench.redis.info("stats")["total_commands_processed"] - before
    return max(0.0, float(min(found) - overhead - 1) / n)


def part_enqueue(bench: Bench, engines: list[Engine], reps: int, n: int) -> dict[str, Any]:
    combos: list[tuple[Engine | None, str]] = [(None, r) for r in REFERENCES]
    for one in engines:
        combos += [(one, r) for r in one.rows()]
    for engine, row in combos:  # warm-up: connections, Lua scripts, queue declarations
        sample(bench, engine, row, 20)
    res: dict[tuple[str, str], list[float]] = {(e.name if e else "", r): [] for e, r in combos}
    foreign: dict[tuple[str, str], list[float]] = {k: [] for k in res}
    brokers: list[float] = []
    t_start = time.perf_counter()
    for rep in range(reps):
        for combo in rotated(combos, rep, step=3):
            engine, row = combo
            key = (engine.name if engine else "", row)
            account = Foreign()
            res[key].append(sample(bench, engine, row, n))
            broker_cores, other, _ = account.stop()
            foreign[key].append(other)
            brokers.append(broker_cores)
        print(
            f"<!-- enqueue rep {rep + 1}/{reps} done at {time.perf_counter() - t_start:.0f} s -->",
            flush=True,
        )
    elapsed = time.perf_counter() - t_start
    cmds: dict[tuple[str, str], float] = {}
    for engine, row in combos:
        if engine is None and "to_envelope" in row:
            continue
        if engine is not None and engine.broker == "amqp" and not row.endswith("Redis store"):
            continue
        cmds[(engine.name if engine else "", row)] = commands_per_enqueue(bench, engine, row)
    all_foreign = [x for xs in foreign.values() for x in xs]
    print(
        f"\n### Enqueue, one client, sequential ({reps} reps x {n} enqueues per sample, "
        f"interleaved; {elapsed:.0f} s; other processes used {median(all_foreign):.2f} cores "
        f"(median of samples, max {max(all_foreign):.2f}); the brokers "
        f"{median(brokers):.2f} cores)\n"
    )
    table = []
    for engine, row in combos:
        name = engine.name if engine else ""
        xs = res[(name, row)]
        per = median(xs)
        if engine is None:
            ratio = "-"
        elif row == "bare":
            ratio = "1.00"
        else:
            ratio = f"{paired_ratio(xs, res[(name, 'bare')]):.2f}"
        c = cmds.get((name, row))
        table.append(
            (
                name or "reference",
                row,
                f"{per * 1e6:,.1f}",
                f"{1 / per:,.0f}",
                ratio,
                "-" if c is None else f"{c:.1f}",
                f"{max(foreign[(name, row)]):.2f}",
            )
        )
    print(
        md_table(
            (
                "engine",
                "path",
                "us per enqueue",
                "enqueues/s",
                "x bare (paired median)",
                "Redis commands per enqueue",
                "max other CPU (cores)",
            ),
            table,
            right=2,
        )
    )
    return {"res": res, "cmds": cmds}


def verdict(ratio: float) -> str:
    """Met or not, with three decimals where two would round across the target."""
    text = yes_no(ratio <= TARGET)
    return text + (f" ({ratio:.3f})" if round(ratio, 2) == TARGET else "")


def enqueue_summary(engines: list[Engine], found: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The ratio split per engine: {engine label: {"SQLite", "Redis", "publish": x bare}}."""
    res = found["res"]
    rows: list[tuple[str, ...]] = []
    notes: dict[str, dict[str, float]] = {}
    for engine in engines:
        prefixes = ["ours"] + (["ours async (aenqueue)"] if isinstance(engine, Arq) else [])
        bare = res[(engine.name, "bare")]
        for prefix in prefixes:
            noop = res[(engine.name, f"{prefix}, no-op store")]
            for kind in ("SQLite", "Redis"):
                ours = res[(engine.name, f"{prefix}, {kind} store")]
                ratio = paired_ratio(ours, bare)
                publish = paired_ratio(noop, bare)
                store_us = median(o - z for o, z in zip(ours, noop, strict=True)) * 1e6
                label = engine.name + (" (aenqueue)" if "async" in prefix else "")
                rows.append(
                    (
                        label,
                        kind,
                        f"{median(bare) * 1e6:,.1f}",
                        f"{median(ours) * 1e6:,.1f}",
                        f"**{ratio:.2f}**",
                        f"{publish:.2f}",
                        f"{store_us:,.1f}",
                        verdict(ratio),
                    )
                )
                notes.setdefault(label, {"publish": publish})[kind] = ratio
    print("\nOur enqueue vs the engine's bare enqueue, split (target: <= 1.10x bare):\n")
    print(
        md_table(
            (
                "engine",
                "store",
                "bare us",
                "ours us",
                "ours x bare",
                "no-op store x bare (publish path)",
                "store us (ours - no-op store)",
                f"<= {TARGET:.2f}x",
            ),
            rows,
            right=2,
        )
    )
    return notes


# -------------------------------------------------------------------------- part 2: drain


def wait_for(done: threading.Event, limit: float) -> bool:
    return done.wait(limit)


def drain_ours(bench: Bench, engine: Engine, n: int, limit: float, fast: bool) -> dict[str, float]:
    store = bench.sqlite_store()
    engine.queue.store = store
    try:
        items = deliveries(engine.guard, n)
        t0 = time.perf_counter()
        for d in items:
            engine.queue.enqueue(d)
        fill = time.perf_counter() - t0
        engine.handler.reset(n)
        t0 = time.perf_counter()
        with engine.worker(fast):
            wait_for(engine.handler.done, limit)
        whole = engine.handler.last - t0
        # The last attempt's record follows its handler call: look once the worker stopped.
        counts = store.counts()
        return {
            "rate": engine.handler.rate,
            "whole": whole,
            "done": engine.handler.count,
            "processed": counts.get("processed", 0),
            "fill": n / fill,
        }
    finally:
        engine.queue.store = bench.noop_store
        bench.done_with(store)
        engine.purge()
        bench.empty_redis()


def drain_bare(bench: Bench, engine: Engine, n: int, limit: float, fast: bool) -> dict[str, float]:
    try:
        items = deliveries(engine.guard, n)
        envelopes = [d.to_envelope() for d in items]
        t0 = time.perf_counter()
        engine.send_noop(envelopes)
        fill = time.perf_counter() - t0
        NOOP.reset(n)
        t0 = time.perf_counter()
        with engine.worker(fast):
            wait_for(NOOP.done, limit)
        return {
            "rate": NOOP.rate,
            "whole": NOOP.last - t0,
            "done": NOOP.count,
            "processed": NOOP.count,
            "fill": n / fill,
        }
    finally:
        engine.purge()
        bench.empty_redis()


def drain_embedded(bench: Bench, n: int, limit: float) -> dict[str, float]:
    folder = tempfile.mkdtemp(dir=bench.work)
    try:
        queue = SQLiteQueue(os.path.join(folder, "q.db"), durability="process")
        handler = Recorder()
        guard = Guard(SECRET, queue=queue, endpoint="bench-embedded", worker="external")
        guard.add_handler(handler)
        items = deliveries(guard, n)
        t0 = time.perf_counter()
        for d in items:
            queue.enqueue(d)
        fill = time.perf_counter() - t0
        handler.reset(n)
        t0 = time.perf_counter()
        Worker(guard).drain(timeout=limit)
        whole = time.perf_counter() - t0
        counts = queue.counts()
        queue.close()
        return {
            "rate": handler.rate,
            "whole": whole,
            "done": handler.count,
            "processed": counts.get("processed", 0),
            "fill": n / fill,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def part_drain(
    bench: Bench, engines: list[Engine], reps: int, n: int, limit: float
) -> dict[str, dict[str, Any]]:
    combos: list[tuple[Engine | None, str]] = [(None, "embedded")]
    for one in engines:
        combos += [(one, kind) for kind in one.drain_kinds()]
    res: dict[tuple[str, str], list[dict[str, float]]] = {
        (e.name if e else "", k): [] for e, k in combos
    }
    foreign: dict[tuple[str, str], list[float]] = {k: [] for k in res}
    t_start = time.perf_counter()
    for rep in range(reps):
        for combo in rotated(combos, rep):
            engine, kind = combo
            key = (engine.name if engine else "", kind)
            account = Foreign()
            if engine is None:
                found = drain_embedded(bench, n, limit)
            elif kind.startswith("ours"):
                found = drain_ours(bench, engine, n, limit, "fast" in kind)
            else:
                found = drain_bare(bench, engine, n, limit, "fast" in kind)
            foreign[key].append(account.stop()[1])
            res[key].append(found)
            print(f"<!-- drain {key}: {found} -->", flush=True)
    elapsed = time.perf_counter() - t_start
    embedded = [x["rate"] for x in res[("", "embedded")]]
    print(
        f"\n### Drain of a backlog of {n:,} no-op deliveries, one worker thread in this process "
        f"({reps} rep(s), interleaved; {elapsed:.0f} s)\n"
    )
    table: list[tuple[str, ...]] = []
    notes: dict[str, dict[str, Any]] = {}
    labels = {
        "embedded": "embedded: `Worker(guard).drain()`, SQLite queue (process durability)",
        "ours": "engine worker running `process_envelope`, SQLite store (process durability)",
        "bare": "engine worker, bare no-op task (reference)",
        "ours, fast poll": "diagnostic: as `ours`, `poll_delay=0.05` (as the tests; ours: 0.5)",
        "bare, fast poll": "diagnostic: as `bare`, `poll_delay=0.05`",
    }
    for engine, kind in combos:
        name = engine.name if engine else "webhook_guard"
        xs = res[(engine.name if engine else "", kind)]
        rates = [x["rate"] for x in xs]
        ratio = paired_ratio(rates, embedded)
        short = [x for x in xs if x["processed"] != n or x["done"] != n]
        if short:
            got = ", ".join(f"{x['processed']:,.0f}" for x in short)
            complete = (
                f"{len(short)} of {len(xs)} runs stopped short: {got} of {n:,} by the timeout"
            )
        else:
            complete = "all"
        bare_ratio = "-"
        if kind.startswith("ours"):
            bare_rates = [x["rate"] for x in res[(name, kind.replace("ours", "bare"))]]
            bare_ratio = f"{paired_ratio(rates, bare_rates):.2f}"
        if kind == "ours":
            notes[name] = {"embedded": ratio, "bare": bare_ratio, "short": len(short)}
        table.append(
            (
                name,
                labels[kind],
                f"{median(rates):,.0f}",
                f"{1e6 / median(rates):,.0f}",
                f"**{ratio:.2f}**" if kind == "ours" else f"{ratio:.2f}",
                bare_ratio,
                f"{median(x['whole'] for x in xs):.2f}",
                complete,
                f"{median(x['fill'] for x in xs):,.0f}",
                f"{max(foreign[(engine.name if engine else '', kind)]):.2f}",
            )
        )
    print(
        md_table(
            (
                "engine",
                "worker",
                "deliveries/s",
                "us per delivery",
                "x embedded",
                "x engine's bare drain",
                "s from worker start to last call",
                "recorded processed",
                "backlog filled at /s",
                "max other CPU (cores)",
            ),
            table,
            right=2,
        )
    )
    return notes


# -------------------------------------------------------------------------- main


def closing_note(enqueued: dict[str, dict[str, float]], drained: dict[str, dict[str, Any]]) -> None:
    """The ratios of the run in one table, and which enqueue targets are met."""
    names = list(dict.fromkeys([*enqueued, *drained]))
    if not names:
        return
    rows = []
    for name in names:
        e, d = enqueued.get(name, {}), drained.get(name, {})
        judged = "-"
        if e:
            judged = ", ".join(f"{k}: {verdict(e[k])}" for k in ("SQLite", "Redis"))
        rows.append(
            (
                name,
                *(f"{e[k]:.2f}" if k in e else "-" for k in ("SQLite", "Redis", "publish")),
                judged,
                f"{d['embedded']:.2f}" if d else "-",
                d.get("bare", "-"),
            )
        )
    print("\n### Closing note: the ratios of this run\n")
    print(
        md_table(
            (
                "engine",
                "enqueue x bare, SQLite store",
                "enqueue x bare, Redis store",
                "publish path alone x bare (no-op store)",
                f"enqueue target <= {TARGET:.2f}x",
                "drain x embedded worker",
                "drain x engine's bare drain",
            ),
            rows,
            right=1,
        )
    )
    met = [f"{n} ({k})" for n, e in enqueued.items() for k in ("SQLite", "Redis") if e[k] <= TARGET]
    if enqueued:
        print(
            f"\nEnqueue target (<= {TARGET:.2f}x the engine's own bare enqueue, same run): met for "
            f"{', '.join(met) if met else 'no engine and no store'}."
        )
    short = [n for n, d in drained.items() if d["short"]]
    if short:
        print(
            f"Drain runs that stopped short of the backlog by the timeout: {', '.join(short)} "
            "(their rates include the stall; see the drain table)."
        )


def server_facts(bench: Bench, engines: list[Engine]) -> list[str]:
    facts = []
    info = bench.redis.info("server")
    persistence = bench.redis.config_get("appendonly")
    save = bench.redis.config_get("save")
    facts.append(
        f"Redis {info['redis_version']} at {bench.args.redis} DB {bench.args.db} "
        f"(appendonly {persistence.get('appendonly')}, save '{save.get('save')}'); "
        f"redis-server {placement('redis-server')}"
    )
    if any(e.broker == "amqp" for e in engines):
        version = "?"
        with contextlib.suppress(Exception):
            import pika

            connection = pika.BlockingConnection(pika.URLParameters(bench.args.amqp + "/%2F"))
            props = connection._impl.server_properties  # private: only to print it
            version = props.get("version", b"?")
            version = version.decode() if isinstance(version, bytes) else str(version)
            connection.close()
        facts.append(f"RabbitMQ {version} at {bench.args.amqp}; beam.smp {placement('beam.smp')}")
    return facts


def port_open(url: str) -> bool:
    """Whether something listens at a URL's host and port (a broker, before we use it)."""
    parts = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2).close()
    except OSError:
        return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="", help="comma-separated; default: all importable here")
    ap.add_argument("--reps", type=int, default=7, help="enqueue repetitions")
    ap.add_argument("--n", type=int, default=300, help="enqueues per sample")
    ap.add_argument("--drain-n", type=int, default=1000, help="backlog drained per sample")
    ap.add_argument("--drain-reps", type=int, default=3)
    ap.add_argument("--drain-timeout", type=float, default=20.0, help="per drain sample, s")
    ap.add_argument("--arq-max-jobs", type=int, default=0, help="0: WorkerSettings' (arq's 10)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument("--db", type=int, default=15, help="Redis DB of the run; must be empty")
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    ap.add_argument("--pin", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--skip-enqueue", action="store_true")
    ap.add_argument("--skip-drain", action="store_true")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: tiny samples; without Redis, a note and exit 0 (make bench-smoke)",
    )
    args = ap.parse_args()
    if args.smoke:
        args.reps, args.n, args.drain_n, args.drain_reps = 1, 10, 20, 1
    args.amqp = args.amqp.rstrip("/")

    wanted = [e for e in args.engines.split(",") if e] if args.engines else list(ENGINES)
    unknown = [e for e in wanted if e not in CLASSES]
    if unknown:
        ap.error(f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    missing = [e for e in wanted if not importable(e)]
    if args.engines and missing:
        ap.error(f"not importable in {sys.executable}: {', '.join(missing)}")
    names = [e for e in wanted if e not in missing]
    if not names:
        ap.error(f"no engine importable in {sys.executable}")

    import redis

    probe = redis.Redis.from_url(f"{args.redis}/{args.db}")
    if args.smoke:  # the smoke needs no broker to pass: without one it says so and stops
        try:
            probe.ping()
        except redis.RedisError as error:
            print(f"(engines.py --smoke skipped: no Redis at {args.redis}: {error})")
            return 0
        if not port_open(args.amqp):
            names = [e for e in names if CLASSES[e].broker != "amqp"]
            print(f"(engines.py --smoke: no RabbitMQ at {args.amqp}; the +amqp engines skipped)")
        if not names:
            return 0
    if probe.dbsize():
        print(
            f"error: Redis DB {args.db} at {args.redis} is not empty; this benchmark empties it. "
            "Pick another with --db (or flush it if it holds only this script's leftovers).",
            file=sys.stderr,
        )
        return 2
    probe.close()

    pin = args.pin == "on" or (args.pin == "auto" and (os.cpu_count() or 1) >= 2)
    if pin:
        os.sched_setaffinity(0, {1})
    work = tempfile.mkdtemp(prefix="wg-engines-")
    bench = Bench(args, work)
    engines: list[Engine] = []
    try:
        engines = [CLASSES[name](args) for name in names]
        print(
            f"## Queue engines: enqueue and drain (`benchmarks/engines.py`, {', '.join(names)})\n"
        )
        print(f"- machine: {machine_line()}")
        print(f"- engines: {versions(ENGINE_PACKAGES)}; interpreter {sys.executable}")
        for fact in server_facts(bench, engines):
            print(f"- {fact}")
        if missing:
            print(f"- not importable here, not measured: {', '.join(missing)}")
        print(
            f"- {'this process pinned to CPU 1' if pin else 'unpinned'}; SQLite files under "
            f"{work} ({fs_type(work)}); load average at start {loadavg()}"
        )
        enqueued: dict[str, dict[str, float]] = {}
        drained: dict[str, dict[str, Any]] = {}
        if not args.skip_enqueue:
            found = part_enqueue(bench, engines, args.reps, args.n)
            enqueued = enqueue_summary(engines, found)
        if not args.skip_drain:
            drained = part_drain(bench, engines, args.drain_reps, args.drain_n, args.drain_timeout)
        print(f"\nLoad average at the end: {loadavg()}.")
        closing_note(enqueued, drained)
    finally:
        for engine in engines:
            with contextlib.suppress(Exception):
                engine.purge()
                engine.delete()
            engine.close()
        with contextlib.suppress(Exception):
            bench.redis.flushdb()
        bench.redis_store.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
