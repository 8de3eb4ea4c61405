"""arq as the queue engine: ``arq://host:6379/0[?queue=name][&store=redis://host:6379/1]``.

The web side reserves the delivery in the store (dedupe + history), then enqueues one arq job,
``webhook_guard_process``, whose only argument is the JSON envelope (JSON serializers on both
sides, never pickle). arq is async-only: ``aenqueue`` awaits the enqueue on the caller's event
loop; the sync ``publish`` (WSGI requests, retries from worker threads) runs it on one event loop
thread that this queue keeps for the life of the process. The worker::

    WEBHOOK_GUARD_APP=myproject.webhooks:guard WEBHOOK_GUARD_QUEUE=arq://127.0.0.1:6379/0 \\
        arq webhook_guard.queues.arq.WorkerSettings

Retries are ours (``process_envelope`` publishes the next attempt with ``_defer_by``). The job id
``<delivery id>:<attempt>`` makes arq drop a second publish of one attempt while it waits;
results are not kept, so a replay may publish attempt 1 again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, ClassVar

try:
    from arq import Retry, create_pool
    from arq.connections import RedisSettings
    from arq.worker import func
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "webhook_guard.queues.arq needs arq: pip install 'webhook-guard[arq]'"
    ) from error

from webhook_guard.core.delivery import Delivery
from webhook_guard.core.queue import Enqueued, EnqueueResult
from webhook_guard.core.store import DeliveryStore
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable
from webhook_guard.queues.broker import BrokerQueue, process_envelope
from webhook_guard.stores import engine_url, open_store

__all__ = ["FUNCTION_NAME", "QUEUE_NAME", "ArqQueue", "WorkerSettings", "from_url", "process"]

logger = logging.getLogger("webhook_guard.queues")

FUNCTION_NAME = "webhook_guard_process"
QUEUE_NAME = "webhook_guard"
QUEUE_ENV = "WEBHOOK_GUARD_QUEUE"
CONNECT_TIMEOUT = 1  # a down Redis answers 503 quickly, not after the sender gave up
PUBLISH_TIMEOUT = 5.0  # arq's pool has no read timeout: a hung Redis must not hang a request
# When this worker cannot run a delivery now (store down, no Guard for it): again this late.
REDELIVER_SECONDS = 10
REDELIVER_TRIES = 30


def dumps(job: Any) -> bytes:
    return json.dumps(job, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    return json.loads(data)


async def process(ctx: dict[str, Any], envelope: dict[str, Any]) -> str:
    """The arq job: one attempt, in a thread (handlers may block; retries publish from there)."""
    try:
        result = await asyncio.to_thread(process_envelope, envelope)
    except (QueueUnavailable, ConfigurationError) as error:
        # Not the handler's failure: this worker cannot run it now. Keep the delivery.
        logger.error("delivery %s: %s; again in %ss", envelope.get("id"), error, REDELIVER_SECONDS)
        raise Retry(defer=REDELIVER_SECONDS) from error
    return result.status


def redis_settings(url: str) -> RedisSettings:
    """arq's settings for a ``redis://`` URL, failing fast: 1 s to connect, no retries."""
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = CONNECT_TIMEOUT
    settings.conn_retries = 0
    return settings


class _LoopThread:
    """One event loop on a daemon thread, per process, for callers that are not async."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # first use, or forked
                self._loop, self._pid = asyncio.new_event_loop(), os.getpid()
                threading.Thread(
                    target=_run_loop, args=(self._loop,), name="webhook-guard-arq", daemon=True
                ).start()
            loop = self._loop
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout)
        except (TimeoutError, concurrent.futures.TimeoutError):
            future.cancel()
            raise

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop if self._pid == os.getpid() else None

    def stop(self) -> None:
        if self._loop is not None and self._pid == os.getpid():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_forever()
    loop.close()


class ArqQueue(BrokerQueue):
    """Deliveries carried by arq; dedupe and history in ``store``.

    Args:
        redis: a ``redis://`` URL or arq ``RedisSettings``.
        store: where dedupe keys and the history live.
        queue_name: the arq queue that the worker (``WorkerSettings``) reads.
    """

    engine = "arq"

    def __init__(
        self, redis: str | RedisSettings, store: DeliveryStore, *, queue_name: str = QUEUE_NAME
    ) -> None:
        super().__init__(store)
        self.settings = redis_settings(redis) if isinstance(redis, str) else redis
        self.queue_name = queue_name
        self._thread = _LoopThread()
        # arq pools belong to the loop that made them: one per loop (the thread's, the ASGI one).
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        s = self.settings
        return f"<ArqQueue {s.host}:{s.port}/{s.database} queue={self.queue_name!r}>"

    def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        try:
            self._thread.run(self._apublish(envelope, delay), PUBLISH_TIMEOUT)
        except QueueUnavailable:
            raise
        except Exception as error:
            raise QueueUnavailable(f"arq: {self!r}: {error or type(error).__name__}") from error

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult:
        # In the request's context (to_thread copies it): the store's wait ends by the
        # request's deadline.
        result = await asyncio.to_thread(self.store.reserve, delivery, self.engine)
        if result.status is Enqueued.DUPLICATE:
            return result
        try:
            await asyncio.wait_for(self._apublish(delivery.to_envelope()), PUBLISH_TIMEOUT)
        except Exception as error:
            try:
                await asyncio.to_thread(self.store.release, delivery)
            except Exception:
                logger.exception("could not release %s after a failed publish", delivery.id)
            reason = f"{error or type(error).__name__}"
            raise QueueUnavailable(f"arq: publishing failed: {reason}") from error
        return result

    async def _apublish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        pool = await self._pool()
        job_id = f"{envelope['id']}:{envelope['attempt']}"
        job = await pool.enqueue_job(
            FUNCTION_NAME,
            envelope,
            _job_id=job_id,
            _defer_by=delay or None,
            _queue_name=self.queue_name,
        )
        if job is None:  # that attempt waits in the queue already: it runs once
            logger.info("arq job %s is already queued", job_id)

    async def _pool(self) -> Any:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = await create_pool(
                self.settings,
                job_serializer=dumps,
                job_deserializer=loads,
                default_queue_name=self.queue_name,
            )
            self._pools[loop] = pool
        return pool

    def close(self) -> None:
        """Close the pool of the publishing thread and stop that thread."""
        loop = self._thread.loop
        pool = self._pools.pop(loop, None) if loop is not None else None
        if pool is not None:
            try:
                self._thread.run(pool.aclose(), PUBLISH_TIMEOUT)
            except Exception:
                logger.debug("closing the arq pool failed", exc_info=True)
        self._thread.stop()


def from_url(url: str) -> ArqQueue:
    """``arq://host:6379/0`` (also ``arq+rediss://``) with ``?queue=`` and ``?store=``."""
    parts = engine_url(url, "arq")
    return ArqQueue(parts.broker, open_store(parts.store), queue_name=parts.queue or QUEUE_NAME)


def _worker_target() -> tuple[RedisSettings, str]:
    url = os.environ.get(QUEUE_ENV, "")
    if not url.startswith("arq"):
        return redis_settings("redis://127.0.0.1:6379/0"), QUEUE_NAME
    parts = engine_url(url, "arq")
    return redis_settings(parts.broker), parts.queue or QUEUE_NAME


_WORKER_REDIS, _WORKER_QUEUE = _worker_target()


class WorkerSettings:
    """``arq webhook_guard.queues.arq.WorkerSettings``: Redis and queue from
    ``WEBHOOK_GUARD_QUEUE`` (the web app's ``arq://`` URL; default 127.0.0.1:6379/0); the Guard
    from ``WEBHOOK_GUARD_APP``."""

    functions: ClassVar[list[Any]] = [
        func(process, name=FUNCTION_NAME, keep_result=0, max_tries=REDELIVER_TRIES)
    ]
    redis_settings = _WORKER_REDIS
    queue_name = _WORKER_QUEUE
    job_serializer = dumps
    job_deserializer = loads
    keep_result = 0
    # arq's default 0.5 s poll caps a backlog's drain at ~200/s; 50 ms gives ~5x that.
    poll_delay = 0.05
