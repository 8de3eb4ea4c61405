"""procrastinate as the queue engine, on the PostgreSQL an app already runs:
``procrastinate+postgresql://user@host:5432/db[?queue=name][&store=redis://host:6379/1]``.

The web side reserves the delivery in the store (dedupe + history), then defers one
procrastinate job, ``webhook_guard.queues.procrastinate.process``, whose only argument is the
JSON envelope. Retries are ours: ``process_envelope`` defers the next attempt with
``schedule_in``, so procrastinate's own retry stays unused. procrastinate's tables must exist
(once per database) and its worker runs the jobs::

    export WEBHOOK_GUARD_QUEUE=procrastinate+postgresql://user@host:5432/db
    procrastinate --app=webhook_guard.queues.procrastinate.app schema --apply
    WEBHOOK_GUARD_APP=myproject.webhooks:guard \\
        procrastinate --app=webhook_guard.queues.procrastinate.app worker --queues=webhook_guard

The reservation and the job are not written in one transaction: the store is SQLite or Redis,
a system of its own, and procrastinate's psycopg connectors take no outside connection to defer
in. As on every engine, a job that cannot be deferred releases the reservation and the sender
gets 503, so it sends again.
The store defaults to SQLite at ``WEBHOOK_GUARD_DB`` (one host); ``?store=redis://...`` shares
it across machines.

A worker killed mid-job (``kill -9``, a lost host) leaves its job ``doing``, and procrastinate
3 never runs such a job again by itself: ``retry_stalled_jobs`` (run it every minute or so, from
cron or a periodic task) puts the jobs of workers whose heartbeat stopped back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import procrastinate
    import psycopg
    from procrastinate import exceptions as procrastinate_exceptions
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "webhook_guard.queues.procrastinate needs procrastinate: "
        "pip install 'webhook-guard[procrastinate]'"
    ) from error

from webhook_guard.core.store import DeliveryStore
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable
from webhook_guard.queues.broker import QUEUE_ENV, BrokerQueue, process_envelope
from webhook_guard.stores import open_store

__all__ = [
    "QUEUE_NAME",
    "STALLED_SECONDS",
    "TASK",
    "ProcrastinateQueue",
    "app",
    "from_url",
    "process",
    "retry_stalled_jobs",
]

logger = logging.getLogger("webhook_guard.queues")

TASK = "webhook_guard.queues.procrastinate.process"
QUEUE_NAME = "webhook_guard"
CONNECT_TIMEOUT = 2  # seconds (libpq's connect_timeout): a down database answers 503 quickly
POOL_TIMEOUT = 3.0  # seconds a request waits for a pooled connection before its 503
# Connections each web process opens at most, on demand (a defer holds one for a moment).
POOL_MAX_SIZE = 4
# The job itself fails only when this worker cannot run the delivery now (store down, no Guard
# for its endpoint): procrastinate runs it again this often, this many times.
REDELIVER_SECONDS = 10.0
REDELIVER_ATTEMPTS = 30
# A worker whose heartbeat is older than this is taken for dead (procrastinate's own default:
# its workers beat every 10 s, so a live one is never taken for dead).
STALLED_SECONDS = 30.0
_SCHEMES = ("procrastinate+postgresql", "procrastinate+postgres")


def split_url(url: str) -> tuple[str, str | None, str | None]:
    """``procrastinate+postgresql://u@h/db?queue=q&store=s`` -> (``postgresql://u@h/db``, store,
    queue); other options stay with the database URL (libpq's, e.g. ``sslmode``)."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{parts.scheme}:// is not a procrastinate queue URL: use "
            "procrastinate+postgresql://user@host:5432/db"
        )
    options = dict(parse_qsl(parts.query))
    queue = options.pop("queue", None)
    store = options.pop("store", None)
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(options)))
    return dsn, store, queue


def _worker_dsn() -> str:
    """The database the worker's ``app`` connects to: ``WEBHOOK_GUARD_QUEUE``'s."""
    url = os.environ.get(QUEUE_ENV, "")
    if not url.startswith(_SCHEMES):
        return ""  # the web side builds its own app; the worker fails clearly on open
    return split_url(url)[0]


# The app procrastinate's own CLI loads (``--app=webhook_guard.queues.procrastinate.app``): it
# runs the worker, which connects to WEBHOOK_GUARD_QUEUE's database.
app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=_worker_dsn(), kwargs={"connect_timeout": CONNECT_TIMEOUT}
    )
)


@app.task(
    name=TASK,
    queue=QUEUE_NAME,
    retry=procrastinate.RetryStrategy(max_attempts=REDELIVER_ATTEMPTS, wait=int(REDELIVER_SECONDS)),
)
def process(envelope: dict[str, Any]) -> None:
    """The procrastinate job: one attempt at one delivery (retries are deferred by
    ``process_envelope``)."""
    process_envelope(envelope)


class ProcrastinateQueue(BrokerQueue):
    """Deliveries carried by procrastinate jobs in PostgreSQL; dedupe and history in ``store``.

    Args:
        dsn: the PostgreSQL database procrastinate's tables are in (``postgresql://...``).
        store: where dedupe keys and the history live.
        queue_name: the procrastinate queue its worker must listen to (``--queues=``).
    """

    engine = "procrastinate"

    def __init__(self, dsn: str, store: DeliveryStore, *, queue_name: str = QUEUE_NAME) -> None:
        super().__init__(store)
        self.dsn = dsn
        self.queue_name = queue_name
        # Deferring is synchronous (web threads, the worker's job threads): a sync connector,
        # opened on first use; its pool connects lazily and reconnects after a failure.
        self._app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(
                conninfo=dsn,
                kwargs={"connect_timeout": CONNECT_TIMEOUT},
                min_size=0,
                max_size=POOL_MAX_SIZE,
                timeout=POOL_TIMEOUT,
            )
        )
        self._open_lock = threading.Lock()
        self._opened = False
        self._pid = os.getpid()

    def __repr__(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname')}"
        return f"<ProcrastinateQueue {where} queue={self.queue_name!r}>"

    def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        """Defer the envelope as a procrastinate job (scheduled when ``delay`` > 0)."""
        options: dict[str, Any] = {"name": TASK, "queue": self.queue_name}
        if delay > 0:
            options["schedule_in"] = {"seconds": delay}
        try:
            self._opened_app().configure_task(**options).defer(envelope=envelope)
        except (procrastinate_exceptions.ProcrastinateException, psycopg.Error, OSError) as error:
            raise QueueUnavailable(f"procrastinate: {self!r}: {error}") from error

    def _opened_app(self) -> procrastinate.App:
        if self._pid != os.getpid():  # forked: the parent's pool is not ours to use
            self._opened, self._pid = False, os.getpid()
        if not self._opened:
            with self._open_lock:
                if not self._opened:
                    self._app.open()
                    self._opened = True
        return self._app

    def close(self) -> None:
        """Close the connection pool."""
        if self._opened and self._pid == os.getpid():
            self._app.close()
        self._opened = False


def from_url(url: str) -> ProcrastinateQueue:
    """``procrastinate+postgresql://user@host:5432/db`` with ``?queue=`` and ``?store=``."""
    dsn, store, queue = split_url(url)
    return ProcrastinateQueue(dsn, open_store(store), queue_name=queue or QUEUE_NAME)


def retry_stalled_jobs(
    queue: ProcrastinateQueue, *, seconds_since_heartbeat: float = STALLED_SECONDS
) -> int:
    """Put our jobs that a dead worker left ``doing`` on ``queue`` back in the queue; return how
    many. A worker is dead when its heartbeat is older than ``seconds_since_heartbeat`` (keep it
    above procrastinate's heartbeat interval, 10 s). The delivery then runs again as the same
    attempt: handlers must be idempotent, as after any crash. Synchronous (cron, a management
    command, a thread); from a coroutine, run it in a thread."""

    async def retry() -> int:
        stalled_app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=queue.dsn, kwargs={"connect_timeout": CONNECT_TIMEOUT}
            )
        )
        async with stalled_app.open_async():
            manager = stalled_app.job_manager
            jobs = list(
                await manager.get_stalled_jobs(
                    queue=queue.queue_name,
                    task_name=TASK,
                    seconds_since_heartbeat=seconds_since_heartbeat,
                )
            )
            for job in jobs:
                logger.warning("procrastinate job %s of a dead worker: queued again", job.id)
                await manager.retry_job(job)
            return len(jobs)

    try:
        return asyncio.run(retry())
    except (procrastinate_exceptions.ProcrastinateException, psycopg.Error, OSError) as error:
        raise QueueUnavailable(f"procrastinate: {queue!r}: {error}") from error
