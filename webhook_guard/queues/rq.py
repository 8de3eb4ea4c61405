"""RQ as the queue engine: ``rq://host:6379/0[?queue=name][&store=redis://host:6379/1]``.

The web side reserves the delivery in the store (dedupe + history), then enqueues one RQ job,
``webhook_guard.queues.rq.process``, whose only argument is the JSON envelope (JSON on the wire,
never pickle). Retries are ours: ``process_envelope`` schedules the next attempt with
``enqueue_in``, so the worker must run RQ's scheduler and the JSON serializer::

    WEBHOOK_GUARD_APP=myproject.webhooks:guard rq worker --with-scheduler \\
        --serializer rq.serializers.JSONSerializer --url redis://127.0.0.1:6379/0 webhook_guard

RQ's scheduler keeps whole seconds (it floors the time), so a retry is scheduled for the next
whole second at or after its backoff: never early, up to a second late.
The store defaults to SQLite at ``WEBHOOK_GUARD_DB`` (one host); ``?store=redis://...`` shares
it across machines.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Any

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry as RedisRetry
    from rq import Queue, Retry
    from rq.exceptions import DuplicateJobError, NoSuchJobError
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "webhook_guard.queues.rq needs RQ: pip install 'webhook-guard[rq]'"
    ) from error

from webhook_guard.core.store import DeliveryStore
from webhook_guard.exceptions import QueueUnavailable
from webhook_guard.queues.broker import BrokerQueue, process_envelope
from webhook_guard.stores import engine_url, open_store

__all__ = ["FUNCTION", "QUEUE_NAME", "RQQueue", "from_url", "process"]

logger = logging.getLogger("webhook_guard.queues")

FUNCTION = "webhook_guard.queues.rq.process"
QUEUE_NAME = "webhook_guard"
CONNECT_TIMEOUT = 1.0  # a down Redis answers 503 quickly, not after the sender gave up
SOCKET_TIMEOUT = 2.0
RESULT_TTL = 60  # results live in our store; RQ's copy is only for a glance at its dashboard
# The job itself fails only when this worker cannot run the delivery now (store down, no Guard
# for its endpoint): RQ runs it again this often, this many times.
REDELIVER = Retry(max=30, interval=10)
_DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def process(envelope: dict[str, Any]) -> str:
    """The RQ job: one attempt at one delivery (retries are published by ``process_envelope``)."""
    return process_envelope(envelope).status


def job_id(envelope: dict[str, Any]) -> str:
    """One job per attempt. RQ allows only ``[A-Za-z0-9_-]`` in job ids, hence ``-``."""
    return f"{envelope['id']}-{envelope['attempt']}"


class RQQueue(BrokerQueue):
    """Deliveries carried by RQ; dedupe and history in ``store``.

    Args:
        connection: a ``redis://`` URL or a redis-py client (``decode_responses=False``).
        store: where dedupe keys and the history live.
        queue_name: the RQ queue that ``rq worker`` must listen to.
        job_timeout: seconds RQ lets one attempt run (RQ's default when None).
    """

    engine = "rq"

    def __init__(
        self,
        connection: str | Any,
        store: DeliveryStore,
        *,
        queue_name: str = QUEUE_NAME,
        job_timeout: int | None = None,
    ) -> None:
        super().__init__(store)
        if isinstance(connection, str):
            connection = redis.Redis.from_url(
                connection,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                retry=RedisRetry(NoBackoff(), 1),  # revives a connection Redis closed meanwhile
            )
        self.connection: Any = connection  # redis-py pools connect lazily and are fork-safe
        self.queue_name = queue_name
        self.job_timeout = job_timeout
        self.queue: Any = Queue(queue_name, connection=connection, serializer=JSONSerializer)

    def __repr__(self) -> str:
        kwargs = self.connection.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', kwargs.get('path'))}:{kwargs.get('port', '')}"
        return f"<RQQueue {where}/{kwargs.get('db', 0)} queue={self.queue_name!r}>"

    def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        """Enqueue the envelope as an RQ job (scheduled when ``delay`` > 0)."""
        try:
            self._publish(envelope, delay)
        except (redis.RedisError, OSError) as error:
            raise QueueUnavailable(f"rq: {self!r}: {error}") from error

    def _publish(self, envelope: dict[str, Any], delay: float) -> None:
        options: dict[str, Any] = {
            "job_id": job_id(envelope),
            "unique": True,
            "result_ttl": RESULT_TTL,
            "retry": REDELIVER,
        }
        if self.job_timeout is not None:
            options["job_timeout"] = self.job_timeout
        for _ in range(3):
            try:
                if delay > 0:
                    # enqueue_in would floor now + delay to a whole second: up to 1 s early.
                    due = datetime.fromtimestamp(math.ceil(time.time() + delay), timezone.utc)
                    self.queue.enqueue_at(due, FUNCTION, envelope, **options)
                else:
                    self.queue.enqueue(FUNCTION, envelope, **options)
                return
            except DuplicateJobError:
                if not self._drop_if_done(options["job_id"]):
                    # Queued, scheduled or running: that job is this attempt; it runs once.
                    logger.info("rq job %s is already queued", options["job_id"])
                    return
        raise QueueUnavailable(f"rq: job {options['job_id']} keeps reappearing")

    def _drop_if_done(self, existing_id: str) -> bool:
        """A finished or failed job of an earlier run (a replay) only blocks its id: drop it."""
        try:
            job = Job.fetch(existing_id, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError:
            return True  # expired meanwhile
        if job.get_status(refresh=False) not in _DONE:
            return False
        job.delete()
        return True

    def close(self) -> None:
        """Close the Redis connection."""
        self.connection.close()


def from_url(url: str) -> RQQueue:
    """``rq://host:6379/0`` (also ``rq+rediss://``) with ``?queue=`` and ``?store=``."""
    parts = engine_url(url, "rq")
    return RQQueue(parts.broker, open_store(parts.store), queue_name=parts.queue or QUEUE_NAME)
