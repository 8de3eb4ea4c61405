"""The PostgreSQL queue and delivery store: ``postgresql://user@host:5432/db``.

The same promise and history as the SQLite queue, for any number of web and worker hosts on
one database:

- ``reserve``/``enqueue`` is one statement (dedupe ``INSERT ... ON CONFLICT`` and the delivery
  record in data-modifying CTEs), committed before it returns: one round trip per delivery.
- Workers claim with ``FOR UPDATE SKIP LOCKED`` and a lease with a fencing token, so two
  workers never take one delivery, a crashed worker's delivery comes back after its lease,
  and a stale worker's ``finish``/``heartbeat`` changes nothing (returns False).
- A new delivery sends ``NOTIFY``; a consumer's listener thread (started when the consumer
  first waits) sets ``enqueued``, so an idle worker on any host wakes at once.
- The tables live in their own schema (``webhook_guard`` by default), created and migrated by
  the library under an advisory lock, with their version in ``schema_version``.
- Every failure to reach or use PostgreSQL raises ``QueueUnavailable`` (503 + Retry-After);
  broken connections are dropped and the next call connects again. The DSN's password never
  appears in a repr, a log line or an exception message.
- Connections are kept in a small pool per process (no thread and no connection exists before
  first use, and a forked child never uses its parent's).

This module imports psycopg 3 (``pip install 'webhook-guard[postgres]'``) and, from this
package, only the core and the exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import psycopg
    from psycopg import pq
    from psycopg.conninfo import conninfo_to_dict
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "webhook_guard.queues.postgres needs psycopg 3: pip install 'webhook-guard[postgres]'"
    ) from error

from webhook_guard.core import events
from webhook_guard.core.deadline import store_deadline
from webhook_guard.core.delivery import Delivery, claimed_delivery, decode_headers
from webhook_guard.core.queue import Enqueued, EnqueueResult, Rejection
from webhook_guard.core.records import (
    ATTEMPT_OUTCOMES,
    DEFAULT_DEDUPE_SECONDS,
    DEFAULT_MAX_REJECTIONS,
    DEFAULT_RETENTION_SECONDS,
    AttemptRecord,
    AttemptResult,
    Claimed,
    DeliveryRecord,
    RejectionRecord,
)
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable

__all__ = ["DEFAULT_POOL_SIZE", "DEFAULT_SCHEMA", "PostgresQueue", "from_url"]

logger = logging.getLogger("webhook_guard.queues")

ENGINE = "postgres"  # the ``engine`` of deliveries this queue carries (and claims)
DEFAULT_SCHEMA = "webhook_guard"
DEFAULT_POOL_SIZE = 10  # connections per process at most
# libpq waits at least 2 s for a connection; a refused one fails at once.
CONNECT_TIMEOUT_SECONDS = 2
# Below the sender's usual 10 s: a request gets its 503 in time when PostgreSQL is stuck.
STATEMENT_TIMEOUT_MS = 5000
# Recording a rejection never waits for a free connection and gives up after this long.
REJECTION_TIMEOUT_MS = 500
# The listener reconnects this long after losing its connection.
LISTEN_RETRY_SECONDS = 1.0
# Our own URL options; everything else in the URL goes to libpq.
URL_OPTIONS = ("schema", "pool_size")
SCHEMA_VERSION = 1
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")

T = TypeVar("T")

# Statements per version; version N runs on a database at N - 1. ``{s}`` is the quoted schema.
_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE {s}.deliveries (
    id          TEXT COLLATE "C" PRIMARY KEY,
    endpoint    TEXT NOT NULL,
    scheme      TEXT NOT NULL,
    event_type  TEXT,
    dedupe_key  TEXT,
    received_at DOUBLE PRECISION NOT NULL,
    headers     TEXT NOT NULL,
    body        BYTEA NOT NULL,
    body_sha256 TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'queued',
    engine      TEXT NOT NULL DEFAULT 'postgres',
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_at      DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION,
    lease_token TEXT,
    -- when a worker may take it: run_at while queued or retrying, lease_until while processing
    due_at      DOUBLE PRECISION,
    last_error  TEXT,
    updated_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX deliveries_due ON {s}.deliveries (engine, endpoint, due_at)
    WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_received ON {s}.deliveries (received_at, id);
CREATE INDEX deliveries_finished ON {s}.deliveries (status, updated_at);
CREATE TABLE {s}.dedupe (
    endpoint    TEXT NOT NULL,
    key         TEXT NOT NULL,
    delivery_id TEXT COLLATE "C" NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (endpoint, key)
);
CREATE INDEX dedupe_expires ON {s}.dedupe (expires_at);
CREATE TABLE {s}.attempts (
    id          BIGSERIAL PRIMARY KEY,
    delivery_id TEXT COLLATE "C" NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    outcome     TEXT,
    error       TEXT,
    traceback   TEXT
);
CREATE INDEX attempts_delivery ON {s}.attempts (delivery_id, id);
CREATE TABLE {s}.rejections (
    id          BIGSERIAL PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    endpoint    TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    remote_addr TEXT,
    reason      TEXT NOT NULL,
    hint        TEXT NOT NULL,
    body_size   BIGINT NOT NULL,
    body_sha256 TEXT
);
CREATE INDEX rejections_received ON {s}.rejections (received_at, id);
CREATE TABLE {s}.consumers (
    id          TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    endpoints   TEXT NOT NULL,
    seen_at     DOUBLE PRECISION NOT NULL
);
""",
}

_SUMMARY = (
    "id, endpoint, scheme, event_type, dedupe_key, received_at, status, attempts, run_at,"
    " last_error, updated_at, length(body), body_sha256"
)


def from_url(url: str) -> PostgresQueue:
    """The queue a ``postgresql://`` (or ``postgres://``) URL names; nothing connects yet."""
    return PostgresQueue(url)


class PostgresQueue:
    """Durable queue + delivery history in PostgreSQL, shared by every host that uses the DSN.

    Args:
        dsn: ``postgresql://user:password@host:5432/db`` (any libpq URL or ``key=value``
            string). Two options of ours may ride in the URL's query: ``schema`` and
            ``pool_size``; the rest go to libpq (``sslmode=require``, ...).
        schema: the PostgreSQL schema that holds the tables (default ``webhook_guard``);
            created on first use, like the tables.
        pool_size: connections this process opens at most (default 10); a call that finds
            them all busy waits for one up to the statement timeout, then raises
            ``QueueUnavailable``.
        dedupe_seconds: how long a delivery id keeps deduping (at least a sender's retry horizon).
        statement_timeout_ms: how long one call may take in all (the wait for a free
            connection, a reconnect, the statement) before it gives up with
            ``QueueUnavailable`` (default 5000, below a sender's 10 s timeout).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        pool_size: int | None = None,
        dedupe_seconds: float = DEFAULT_DEDUPE_SECONDS,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    ) -> None:
        conninfo, options = _split_url(dsn)
        schema = schema or options.get("schema") or DEFAULT_SCHEMA
        if not _IDENTIFIER.match(schema):
            raise ConfigurationError(
                f"PostgreSQL schema {schema!r}: use lower-case letters, digits and _ "
                "(at most 40, not starting with a digit)"
            )
        try:
            size = pool_size if pool_size is not None else int(options.get("pool_size", 0) or 0)
        except ValueError:
            raise ConfigurationError("pool_size in the PostgreSQL URL must be a number") from None
        if size < 0:
            raise ConfigurationError("pool_size must be positive")
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.Error:
            # The message may quote the DSN, password included: name the setting only.
            raise ConfigurationError(
                "the PostgreSQL URL is not a valid libpq connection string"
            ) from None
        self._password = str(params.get("password") or "")
        # Defaults for what the URL does not say. Keepalives and tcp_user_timeout end a
        # connection whose server vanished (a dead host sends no RST), so a request waits for
        # its 503 no longer than the statement timeout instead of the kernel's minutes.
        defaults: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": "webhook_guard",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
            "tcp_user_timeout": int(statement_timeout_ms),
        }
        self._connect_options = {k: v for k, v in defaults.items() if k not in params}
        self._conninfo = conninfo
        self.schema = schema
        self.pool_size = size or DEFAULT_POOL_SIZE
        self.dedupe_seconds = dedupe_seconds
        self.statement_timeout_ms = statement_timeout_ms
        self.where = _describe(params)
        self.channel = f"webhook_guard_{schema}"
        self._s = f'"{schema}"'
        self._pid: int | None = None
        self._fork_lock = threading.Lock()
        self._pool = _Pool(self.pool_size)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._enqueued = threading.Event()
        self._listener: _Listener | None = None
        self.rejections_dropped = 0  # rejections not recorded because the store was unavailable
        self._last_drop_warning = 0.0
        self._finalizer = weakref.finalize(self, _shutdown, self._pool, os.getpid())

    def __repr__(self) -> str:
        return f"<PostgresQueue {self.where} schema={self.schema}>"

    # -- connections -------------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child, forget the parent's connections unused (closing one would end
        the parent's session) and its listener thread (which does not exist here)."""
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._fork_lock:
            if self._pid != pid:
                if self._pid is not None:
                    self._pool = _Pool(self.pool_size)
                    self._finalizer.detach()
                    self._finalizer = weakref.finalize(self, _shutdown, self._pool, os.getpid())
                    self._enqueued = threading.Event()
                    self._listener = None
                self._pid = pid

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_options)
        except psycopg.Error as error:
            raise QueueUnavailable(self._message(error)) from None
        try:
            conn.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
            self._ensure_schema(conn)
        except psycopg.Error as error:
            conn.close()
            raise QueueUnavailable(self._message(error)) from None
        return conn

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Create or migrate the tables once per process. A database already at this version
        needs no DDL (and no CREATE privilege); otherwise one process migrates at a time."""
        with self._schema_lock:  # taken only when a connection opens
            if self._schema_ready:
                return
            if self._schema_version(conn) < SCHEMA_VERSION:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.channel,))
                    # Only when missing: an existing schema (made by a DBA for a user without
                    # CREATE on the database) needs no right on the database.
                    exists = conn.execute(
                        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f"CREATE SCHEMA {self._s}")
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {self._s}.schema_version"
                        " (version INTEGER NOT NULL)"
                    )
                    current = self._schema_version(conn)
                    for version in range(current + 1, SCHEMA_VERSION + 1):
                        conn.execute(_MIGRATIONS[version].format(s=self._s))
                        conn.execute(
                            f"INSERT INTO {self._s}.schema_version (version) VALUES (%s)",
                            (version,),
                        )
            self._schema_ready = True

    def _schema_version(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{self._s}.schema_version",)
        ).fetchone()
        if not row or not row[0]:
            return 0
        found = conn.execute(f"SELECT max(version) FROM {self._s}.schema_version").fetchone()
        return int(found[0]) if found and found[0] is not None else 0

    def _message(self, error: BaseException) -> str:
        """What an error says, prefixed with where, with the password (if any) blanked."""
        text = str(error).strip() or type(error).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return f"postgresql store {self.where}: {text}"

    def _run(
        self,
        work: Callable[[psycopg.Connection[Any]], T],
        *,
        wait: float | None = None,
    ) -> T:
        """``work(connection)`` on a pooled connection, answered within the statement timeout
        in all (waiting for a free connection, connecting and the statement itself), or by the
        request's deadline if that is sooner (``core.deadline.store_deadline``: a request is
        answered 503 in time, not after the store's whole budget); every psycopg error becomes
        ``QueueUnavailable``. A broken connection is dropped, with every idle one (after a
        server restart they are all dead), and ``work`` runs once more on a fresh connection
        when the broken one was an old one: a restart costs no request its 200. ``wait``: how
        long to wait for a free connection at most."""
        self._after_fork()
        pool = self._pool
        deadline = store_deadline(self.statement_timeout_ms / 1000)
        budget = max(0.0, deadline - time.monotonic())
        wait = budget if wait is None else min(wait, budget)
        if not pool.slots.acquire(timeout=wait):
            raise QueueUnavailable(
                f"postgresql store {self.where}: all {self.pool_size} connections of this "
                f"process stayed busy for {wait:g} s (pool_size)"
            )
        try:
            retried = False
            while True:
                conn, reused = pool.take()
                if conn is None:
                    conn = self._connect()
                try:
                    result = self._within(conn, deadline, work)
                except psycopg.OperationalError as error:
                    if not conn.broken:  # a statement timeout: the connection is fine
                        pool.give_back(conn)
                        raise QueueUnavailable(self._message(error)) from None
                    pool.discard(conn)
                    pool.discard_idle()
                    if reused and not retried:
                        retried = True
                        continue
                    raise QueueUnavailable(self._message(error)) from None
                except psycopg.Error as error:
                    pool.give_back(conn)
                    raise QueueUnavailable(self._message(error)) from None
                except BaseException:
                    pool.give_back(conn)
                    raise
                pool.give_back(conn)
                return result
        finally:
            pool.slots.release()

    def _within(
        self,
        conn: psycopg.Connection[Any],
        deadline: float,
        work: Callable[[psycopg.Connection[Any]], T],
    ) -> T:
        """Run ``work`` with what is left of the budget as its statement timeout: the usual one,
        or (after a wait for a connection or a reconnect) a shorter one for this call only."""
        left = deadline - time.monotonic()
        if left <= 0.01:
            raise QueueUnavailable(
                f"postgresql store {self.where}: no time left within "
                f"{self.statement_timeout_ms} ms (statement_timeout_ms) or the request's deadline"
            )
        if left * 1000 >= self.statement_timeout_ms - 50:
            return work(conn)  # the common case: no wait, no extra round trip
        conn.execute(f"SET statement_timeout = {max(1, int(left * 1000))}")
        try:
            return work(conn)
        finally:
            try:
                conn.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
            except psycopg.Error:  # not reset: the pool must not hand it out again
                conn.close()

    def close(self) -> None:
        """Nothing to release per thread: a connection goes back to the pool after each call.
        ``dispose()`` closes the pool and the listener."""

    def dispose(self) -> None:
        """Close this process's idle connections and stop its listener thread; the queue
        stays usable (the next call connects again)."""
        self._after_fork()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._pool.discard_idle()

    # -- the request side --------------------------------------------------------------------

    def enqueue(self, delivery: Delivery) -> EnqueueResult:
        """Dedupe and store ``delivery`` durably (committed on return); ``QueueUnavailable``
        for any failure."""
        return self.reserve(delivery, ENGINE)

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult:
        """``enqueue`` in a thread: the event loop never waits for PostgreSQL. It runs in the
        request's context, so it ends by the request's deadline, executor queueing included."""
        return await asyncio.to_thread(self.enqueue, delivery)  # to_thread copies the context

    def record_rejection(self, rejection: Rejection) -> None:
        """Best effort: never waits for a free connection, gives up after
        ``REJECTION_TIMEOUT_MS``; a rejection that cannot be recorded is counted in
        ``rejections_dropped`` (and logged once per 10 s)."""
        r = rejection

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {REJECTION_TIMEOUT_MS}")
                conn.execute(
                    f"INSERT INTO {self._s}.rejections (received_at, endpoint, method, path,"
                    " remote_addr, reason, hint, body_size, body_sha256)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        r.received_at,
                        r.endpoint,
                        r.method,
                        r.path,
                        r.remote_addr,
                        r.reason,
                        r.hint,
                        r.body_size,
                        r.body_sha256,
                    ),
                )

        try:
            self._run(write, wait=0.0)
        except QueueUnavailable as error:
            self.rejections_dropped += 1
            events.notify_store_error("record_rejection", error)
            now = time.monotonic()
            if now - self._last_drop_warning > 10.0:
                self._last_drop_warning = now
                logger.warning(
                    "rejections not recorded while the store is unavailable (%d so far): %s",
                    self.rejections_dropped,
                    error,
                )

    async def arecord_rejection(self, rejection: Rejection) -> None:
        """``record_rejection`` in a thread."""
        await asyncio.get_running_loop().run_in_executor(None, self.record_rejection, rejection)

    # -- the store side (also what enqueue runs) ---------------------------------------------

    def reserve(self, delivery: Delivery, engine: str) -> EnqueueResult:
        """Dedupe and record a delivery in one statement: NEW, or DUPLICATE naming the
        delivery that holds the key. A new delivery of this queue also NOTIFYs consumers."""
        d = delivery
        now = time.time()
        s = self._s
        if d.dedupe_key is None:
            claim = "claimed AS (SELECT 1)"
        else:
            # An expired key no longer dedupes: the upsert takes it over.
            claim = (
                f"claimed AS (INSERT INTO {s}.dedupe (endpoint, key, delivery_id, expires_at)"
                " VALUES (%(endpoint)s, %(key)s, %(id)s, %(expires)s)"
                " ON CONFLICT (endpoint, key) DO UPDATE SET delivery_id = excluded.delivery_id,"
                f" expires_at = excluded.expires_at WHERE {s}.dedupe.expires_at < %(now)s"
                " RETURNING 1)"
            )
        notify = ", pg_notify(%(channel)s, inserted.endpoint)" if engine == ENGINE else ""
        query = (
            f"WITH {claim}, inserted AS ("
            f"INSERT INTO {s}.deliveries (id, endpoint, scheme, event_type, dedupe_key,"
            " received_at, headers, body, body_sha256, status, engine, run_at, due_at,"
            " updated_at)"
            " SELECT %(id)s, %(endpoint)s, %(scheme)s, %(event_type)s, %(key)s, %(received_at)s,"
            " %(headers)s, %(body)s, %(sha)s, 'queued', %(engine)s, %(now)s, %(due)s, %(now)s"
            " WHERE EXISTS (SELECT FROM claimed) RETURNING id, endpoint)"
            f" SELECT inserted.id{notify} FROM inserted"
        )
        params = {
            "id": d.id,
            "endpoint": d.endpoint,
            "scheme": d.scheme,
            "event_type": d.event_type,
            "key": d.dedupe_key,
            "received_at": d.received_at,
            "headers": json.dumps(list(d.headers)),
            "body": d.body,
            "sha": d.body_sha256,
            "engine": engine,
            "now": now,
            "due": now if engine == ENGINE else None,
            "expires": now + self.dedupe_seconds,
            "channel": self.channel,
        }

        def write(conn: psycopg.Connection[Any]) -> EnqueueResult:
            if conn.execute(query, params).fetchone() is not None:
                return EnqueueResult(Enqueued.NEW, d.id)
            row = conn.execute(
                f"SELECT delivery_id FROM {s}.dedupe WHERE endpoint = %s AND key = %s",
                (d.endpoint, d.dedupe_key),
            ).fetchone()
            if row is None:  # the holder was released meanwhile: the sender retries
                raise QueueUnavailable(f"postgresql store {self.where}: dedupe key moved")
            return EnqueueResult(Enqueued.DUPLICATE, str(row[0]))

        result = self._run(write)
        if engine == ENGINE and result.status is Enqueued.NEW:
            self._enqueued.set()
        return result

    def release(self, delivery: Delivery) -> None:
        """Forget a reserved delivery and its dedupe key (its broker publish failed); the key
        stays when another delivery holds it."""
        s = self._s

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(f"DELETE FROM {s}.deliveries WHERE id = %s", (delivery.id,))
                conn.execute(f"DELETE FROM {s}.attempts WHERE delivery_id = %s", (delivery.id,))
                conn.execute(
                    f"DELETE FROM {s}.dedupe WHERE endpoint = %s AND key = %s AND delivery_id = %s",
                    (delivery.endpoint, delivery.dedupe_key, delivery.id),
                )

        self._run(write)

    def attempt_started(self, delivery_id: str, attempt: int) -> None:
        """Record that a broker worker began attempt ``attempt`` (a delivery that is gone is
        left alone)."""
        now = time.time()
        s = self._s

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                started = conn.execute(
                    f"UPDATE {s}.deliveries SET status = 'processing', attempts = %s,"
                    " updated_at = %s WHERE id = %s",
                    (attempt, now, delivery_id),
                ).rowcount
                if not started:
                    return
                conn.execute(
                    f"UPDATE {s}.attempts SET finished_at = %s, outcome = 'lost',"
                    " error = 'the worker stopped before finishing'"
                    " WHERE delivery_id = %s AND finished_at IS NULL",
                    (now, delivery_id),
                )
                conn.execute(
                    f"INSERT INTO {s}.attempts (delivery_id, attempt, started_at)"
                    " VALUES (%s, %s, %s)",
                    (delivery_id, attempt, now),
                )

        self._run(write)

    def attempt_finished(self, delivery_id: str, attempt: int, result: AttemptResult) -> None:
        """Record how a broker worker's attempt ended, fenced by the attempt number."""
        now = time.time()
        s = self._s
        outcome = ATTEMPT_OUTCOMES[result.status]

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(
                    f"UPDATE {s}.deliveries SET status = %s, run_at = %s, last_error = %s,"
                    " updated_at = %s WHERE id = %s AND attempts = %s",
                    (
                        result.status,
                        now + (result.delay or 0.0),
                        None if result.status == "processed" else result.error,
                        now,
                        delivery_id,
                        attempt,
                    ),
                )
                conn.execute(
                    f"UPDATE {s}.attempts SET finished_at = %s, outcome = %s, error = %s,"
                    " traceback = %s WHERE id = (SELECT max(id) FROM"
                    f" {s}.attempts WHERE delivery_id = %s AND attempt = %s)"
                    " AND (finished_at IS NULL OR outcome = 'lost')",
                    (now, outcome, result.error, result.traceback, delivery_id, attempt),
                )

        self._run(write)

    def load(self, delivery_id: str) -> Delivery | None:
        """The stored delivery, body and headers included (for replay), or None."""
        record = self.get(delivery_id)
        return record.delivery() if record is not None else None

    def replay(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> int:
        """Queue deliveries again with a fresh attempt budget; return how many."""
        return len(self.mark_replayed(delivery_ids, statuses=statuses))

    def mark_replayed(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> list[str]:
        """Queue the given deliveries (or those in ``statuses``) again with a fresh attempt
        budget; returns their ids. A delivery in a worker's hands is left alone."""
        now = time.time()
        s = self._s
        if delivery_ids is not None:
            where, value = "id = ANY(%(values)s)", list(delivery_ids)
        else:
            where, value = "status = ANY(%(values)s)", list(statuses)

        def write(conn: psycopg.Connection[Any]) -> list[str]:
            rows = conn.execute(
                f"UPDATE {s}.deliveries SET status = 'queued', attempts = 0, run_at = %(now)s,"
                " updated_at = %(now)s, lease_until = NULL, lease_token = NULL,"
                f" due_at = CASE WHEN engine = '{ENGINE}' THEN %(now)s END"
                f" WHERE {where} AND status != 'processing' RETURNING id",
                {"now": now, "values": value},
            ).fetchall()
            return [str(row[0]) for row in rows]

        ids = self._run(write)
        if ids:
            self._notify()
        return ids

    def _notify(self) -> None:
        """Wake consumers (here and on other hosts): best effort."""
        self._enqueued.set()
        with contextlib.suppress(QueueUnavailable):
            self._run(lambda conn: conn.execute("SELECT pg_notify(%s, '')", (self.channel,)))

    # -- the worker side ---------------------------------------------------------------------

    @property
    def store_key(self) -> str:
        """The database and schema: every queue object on them shares one consumer and one
        set of endpoint names in a process."""
        return f"postgresql:{self.where}/{self.schema}"

    @property
    def enqueued(self) -> threading.Event:
        """Set when a delivery was enqueued here or (through LISTEN/NOTIFY) on any host; the
        first call starts this process's listener thread."""
        self._after_fork()
        if self._listener is None or not self._listener.alive:
            with self._fork_lock:
                if self._listener is None or not self._listener.alive:
                    self._listener = _Listener(
                        self._conninfo,
                        self._connect_options,
                        self.channel,
                        self._enqueued,
                        self._message,
                    )
        return self._enqueued

    def claim(
        self, lease_seconds: float, endpoints: Collection[str] | None = None
    ) -> Claimed | None:
        """Lease the earliest due delivery of ``endpoints`` (None: any endpoint), or one whose
        worker's lease expired; rows another worker is claiming are skipped, not waited for."""
        if endpoints is not None and not endpoints:
            return None
        now = time.time()
        token = uuid.uuid4().hex
        s = self._s
        which = "" if endpoints is None else " AND endpoint = ANY(%(endpoints)s)"
        query = (
            f"WITH picked AS (SELECT id FROM {s}.deliveries WHERE engine = '{ENGINE}'"
            f" AND due_at <= %(now)s{which} ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED),"
            f" claimed AS (UPDATE {s}.deliveries AS d SET status = 'processing',"
            " attempts = d.attempts + 1, lease_until = %(until)s, due_at = %(until)s,"
            " lease_token = %(token)s, updated_at = %(now)s FROM picked WHERE d.id = picked.id"
            " RETURNING d.id, d.endpoint, d.scheme, d.event_type, d.dedupe_key, d.received_at,"
            " d.headers, d.body, d.attempts),"
            # An attempt left unfinished means its worker died holding the lease.
            f" lost AS (UPDATE {s}.attempts SET finished_at = %(now)s, outcome = 'lost',"
            " error = 'the worker stopped before finishing (lease expired)'"
            " WHERE delivery_id IN (SELECT id FROM claimed) AND finished_at IS NULL),"
            f" started AS (INSERT INTO {s}.attempts (delivery_id, attempt, started_at)"
            " SELECT id, attempts, %(now)s FROM claimed)"
            " SELECT * FROM claimed"
        )
        params = {
            "now": now,
            "until": now + lease_seconds,
            "token": token,
            "endpoints": sorted(set(endpoints)) if endpoints is not None else None,
        }
        row = self._run(lambda conn: conn.execute(query, params).fetchone())
        if row is None:
            return None
        return Claimed(claimed_delivery(row), token)

    def heartbeat(self, claimed: Claimed, lease_seconds: float) -> bool:
        """Extend the lease of a long handler; False once another worker owns the delivery."""
        until = time.time() + lease_seconds
        changed = self._run(
            lambda conn: (
                conn.execute(
                    f"UPDATE {self._s}.deliveries SET lease_until = %s, due_at = %s"
                    " WHERE id = %s AND lease_token = %s",
                    (until, until, claimed.delivery.id, claimed.token),
                ).rowcount
            )
        )
        return changed == 1

    def finish(self, claimed: Claimed, result: AttemptResult) -> bool:
        """Record how an attempt ended; a no-op (False) for a worker that lost its lease."""
        now = time.time()
        s = self._s
        status = result.status
        run_at = now + (result.delay or 0.0)
        query = (
            f"WITH done AS (UPDATE {s}.deliveries SET status = %(status)s, run_at = %(run_at)s,"
            " due_at = %(due)s, lease_until = NULL, lease_token = NULL,"
            " last_error = %(last_error)s, updated_at = %(now)s"
            " WHERE id = %(id)s AND lease_token = %(token)s RETURNING id),"
            f" recorded AS (UPDATE {s}.attempts SET finished_at = %(now)s, outcome = %(outcome)s,"
            " error = %(error)s, traceback = %(traceback)s"
            " WHERE delivery_id IN (SELECT id FROM done) AND attempt = %(attempt)s"
            " AND finished_at IS NULL)"
            " SELECT count(*) FROM done"
        )
        params = {
            "status": status,
            "run_at": run_at,
            "due": run_at if status == "retrying" else None,
            "last_error": None if status == "processed" else (result.error or ""),
            "now": now,
            "id": claimed.delivery.id,
            "token": claimed.token,
            "outcome": ATTEMPT_OUTCOMES[status],
            "error": None if status == "processed" else (result.error or ""),
            "traceback": result.traceback,
            "attempt": claimed.delivery.attempt,
        }
        row = self._run(lambda conn: conn.execute(query, params).fetchone())
        return bool(row and row[0] == 1)

    def next_due_in(self, endpoints: Collection[str] | None = None) -> float | None:
        """Seconds until a delivery of ``endpoints`` (None: any) is due (0: now), None if none
        waits."""
        if endpoints is not None and not endpoints:
            return None
        which = "" if endpoints is None else " AND endpoint = ANY(%s)"
        params = [] if endpoints is None else [sorted(set(endpoints))]
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT min(due_at) FROM {self._s}.deliveries WHERE engine = '{ENGINE}'"
                f" AND due_at IS NOT NULL{which}",
                params,
            ).fetchone()
        )
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]) - time.time())

    def housekeeping(self) -> None:
        """What a consumer runs now and then: purge by the default retention."""
        self.purge()

    def consumer_seen(self, consumer_id: str, endpoints: Collection[str]) -> None:
        """A consumer says it is alive and which endpoints it serves (every few seconds)."""
        now = time.time()
        s = self._s

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(
                    f"INSERT INTO {s}.consumers (id, host, pid, endpoints, seen_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE"
                    " SET endpoints = excluded.endpoints, seen_at = excluded.seen_at",
                    (
                        consumer_id,
                        socket.gethostname(),
                        os.getpid(),
                        json.dumps(sorted(endpoints)),
                        now,
                    ),
                )
                conn.execute(f"DELETE FROM {s}.consumers WHERE seen_at < %s", (now - 86400,))

        self._run(write)

    def live_consumers(self, within: float) -> dict[str, list[str]]:
        """Endpoint -> descriptions (``pid 123 on host``) of consumers seen in the last
        ``within`` seconds."""
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT host, pid, endpoints FROM {self._s}.consumers WHERE seen_at >= %s",
                (time.time() - within,),
            ).fetchall()
        )
        found: dict[str, list[str]] = {}
        for host, pid, endpoints in rows:
            for endpoint in json.loads(endpoints):
                found.setdefault(endpoint, []).append(f"pid {pid} on {host}")
        return found

    # -- history -----------------------------------------------------------------------------

    def deliveries(
        self,
        *,
        statuses: tuple[str, ...] = (),
        since: float | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        before: tuple[float, str] | None = None,
    ) -> list[DeliveryRecord]:
        """Accepted deliveries, newest first (ties by id, descending); ``before``: only those
        after ``(received_at, id)`` in that order (the history's cursor)."""
        where, params = _filters(statuses, since, endpoint, before)
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT {_SUMMARY} FROM {self._s}.deliveries {where}"
                " ORDER BY received_at DESC, id DESC LIMIT %s",
                (*params, limit),
            ).fetchall()
        )
        return [DeliveryRecord(*row) for row in rows]

    def rejections(
        self,
        *,
        since: float | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        before: tuple[float, int] | None = None,
    ) -> list[RejectionRecord]:
        """Rejected requests (metadata only), newest first, ties by id; ``before`` as for
        ``deliveries``."""
        where, params = _filters((), since, endpoint, before)
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT id, received_at, endpoint, method, path, remote_addr, reason, hint,"
                f" body_size, body_sha256 FROM {self._s}.rejections {where}"
                " ORDER BY received_at DESC, id DESC LIMIT %s",
                (*params, limit),
            ).fetchall()
        )
        return [RejectionRecord(*row) for row in rows]

    def match_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to ``limit`` delivery ids that start with ``prefix`` (two tell ambiguous)."""
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT id FROM {self._s}.deliveries WHERE id >= %s AND id < %s"
                " ORDER BY id LIMIT %s",
                (prefix, prefix + "\uffff", limit),
            ).fetchall()
        )
        return [str(row[0]) for row in rows]

    def get_rejection(self, rejection_id: int) -> RejectionRecord | None:
        """One rejected request, by the number ``history`` shows after its ``r``."""
        row = self._run(
            lambda conn: conn.execute(
                "SELECT id, received_at, endpoint, method, path, remote_addr, reason, hint,"
                f" body_size, body_sha256 FROM {self._s}.rejections WHERE id = %s",
                (rejection_id,),
            ).fetchone()
        )
        return RejectionRecord(*row) if row is not None else None

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery with headers, body and every attempt; ``delivery_id`` may be a prefix."""
        s = self._s

        def read(
            conn: psycopg.Connection[Any],
        ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            with conn.transaction():
                rows = conn.execute(
                    f"SELECT {_SUMMARY}, headers, body FROM {s}.deliveries"
                    " WHERE id >= %s AND id < %s LIMIT 2",
                    (delivery_id, delivery_id + "\uffff"),
                ).fetchall()
                if len(rows) != 1:
                    return rows, []
                attempts = conn.execute(
                    "SELECT attempt, started_at, finished_at, outcome, error, traceback"
                    f" FROM {s}.attempts WHERE delivery_id = %s ORDER BY id",
                    (rows[0][0],),
                ).fetchall()
                return rows, attempts

        rows, attempts = self._run(read)
        if len(rows) != 1:
            return None
        row = rows[0]
        return replace(
            DeliveryRecord(*row[:13]),
            headers=decode_headers(row[13]),
            body=bytes(row[14]),
            attempt_log=tuple(AttemptRecord(*a) for a in attempts),
        )

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each status."""
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT status, count(*) FROM {self._s}.deliveries GROUP BY status"
            ).fetchall()
        )
        return {str(status): int(count) for status, count in rows}

    def purge(
        self,
        older_than: float = DEFAULT_RETENTION_SECONDS,
        max_rejections: int = DEFAULT_MAX_REJECTIONS,
    ) -> int:
        """Forget processed (and ignored) deliveries and rejections older than ``older_than``
        seconds, rejections beyond the newest ``max_rejections``, and expired dedupe keys.
        Queued, retrying and dead deliveries are kept until replayed. Deletes a chunk per
        transaction, so no lock is held long."""
        cutoff = time.time() - older_than
        s = self._s
        chunk = 1000
        # SKIP LOCKED: consumers on several hosts purge now and then; none waits for another.
        deliveries = (
            f"WITH gone AS (DELETE FROM {s}.deliveries WHERE id IN (SELECT id FROM"
            f" {s}.deliveries WHERE status IN ('processed', 'ignored') AND updated_at < %s"
            f" LIMIT {chunk} FOR UPDATE SKIP LOCKED) RETURNING id),"
            f" attempts AS (DELETE FROM {s}.attempts WHERE delivery_id IN (SELECT id FROM gone))"
            " SELECT count(*) FROM gone"
        )
        rejections = (
            f"WITH gone AS (DELETE FROM {s}.rejections WHERE id IN (SELECT id FROM"
            f" {s}.rejections WHERE received_at < %s OR id <= (SELECT max(id) FROM"
            f" {s}.rejections) - %s LIMIT {chunk} FOR UPDATE SKIP LOCKED) RETURNING id)"
            " SELECT count(*) FROM gone"
        )
        keys = (
            f"WITH gone AS (DELETE FROM {s}.dedupe WHERE (endpoint, key) IN (SELECT endpoint,"
            f" key FROM {s}.dedupe WHERE expires_at < %s LIMIT {chunk} FOR UPDATE SKIP LOCKED)"
            " RETURNING 1) SELECT count(*) FROM gone"
        )

        def count(query: str, params: tuple[Any, ...]) -> int:
            row = self._run(lambda conn: conn.execute(query, params).fetchone())
            return int(row[0]) if row else 0

        total = 0
        for query, params, counted in (
            (deliveries, (cutoff,), True),
            (rejections, (cutoff, max_rejections), True),
            (keys, (time.time(),), False),
        ):
            while True:
                gone = count(query, params)
                total += gone if counted else 0
                if gone < chunk:
                    break
        return total


class _Pool:
    """Idle connections of one process, and a semaphore with a slot per connection allowed."""

    def __init__(self, size: int) -> None:
        self.slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def take(self) -> tuple[psycopg.Connection[Any] | None, bool]:
        """An idle connection (and True), or (None, False): the caller connects."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, True
        return None, False

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        """Keep a healthy connection for the next call; close one left mid-transaction."""
        if conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.discard(conn)
            return
        with self._lock:
            self._idle.append(conn)

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        """Close a connection that must not be used again."""
        try:
            conn.close()
        except Exception:  # already gone
            logger.debug("closing a broken PostgreSQL connection failed", exc_info=True)

    def discard_idle(self) -> None:
        """Close every idle connection (after a server restart they are all dead)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self.discard(conn)


class _Listener:
    """A daemon thread that LISTENs on the queue's channel and sets ``event`` on each NOTIFY;
    it reconnects after errors (and sets ``event`` then too: notifications may have been
    missed meanwhile). It holds no reference to the queue, so the queue can be collected."""

    def __init__(
        self,
        conninfo: str,
        options: dict[str, Any],
        channel: str,
        event: threading.Event,
        describe: Callable[[BaseException], str],
    ) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_listen,
            args=(conninfo, options, channel, event, self._stop, describe),
            name="webhook-guard-listen",
            daemon=True,
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """End the thread within about a second."""
        self._stop.set()
        self._thread.join(3.0)


def _listen(
    conninfo: str,
    options: dict[str, Any],
    channel: str,
    event: threading.Event,
    stop: threading.Event,
    describe: Callable[[BaseException], str],
) -> None:
    failures = 0
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True, **options) as conn:
                conn.execute(f'LISTEN "{channel}"')
                failures = 0
                event.set()
                while not stop.is_set():
                    for _ in conn.notifies(timeout=0.5):
                        event.set()
        except Exception as error:
            failures += 1
            if failures == 1 or failures % 60 == 0:
                logger.warning("listening for new deliveries failed, retrying: %s", describe(error))
            stop.wait(LISTEN_RETRY_SECONDS)


def _shutdown(pool: _Pool, pid: int) -> None:
    """When a queue object is collected (or at exit): close its idle connections, only in the
    process that opened them. A forked child closing an inherited connection would end the
    parent's session (PQfinish sends Terminate on the shared socket)."""
    if os.getpid() == pid:
        pool.discard_idle()


def _split_url(dsn: str) -> tuple[str, dict[str, str]]:
    """Take our options (``schema``, ``pool_size``) out of a URL's query; libpq gets the rest."""
    if "://" not in dsn:
        return dsn, {}
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in URL_OPTIONS}
    rest = [(k, v) for k, v in query if k not in URL_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def _describe(params: dict[str, Any]) -> str:
    """``user@host:port/db``: where the store is, without the password."""
    user = params.get("user")
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    db = params.get("dbname") or user or ""
    return f"{user + '@' if user else ''}{host}:{port}/{db}"


def _filters(
    statuses: tuple[str, ...],
    since: float | None,
    endpoint: str | None,
    before: tuple[float, Any] | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if before is not None:  # the history's cursor: after the last row shown, ties by id
        clauses.append("(received_at < %s OR (received_at = %s AND id < %s))")
        params += [before[0], before[0], before[1]]
    if statuses:
        clauses.append("status = ANY(%s)")
        params.append(list(statuses))
    if since is not None:
        clauses.append("received_at >= %s")
        params.append(since)
    if endpoint is not None:
        clauses.append("endpoint = %s")
        params.append(endpoint)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
