"""The embedded durable queue and delivery history, in one SQLite file.

- WAL; ``synchronous=FULL`` by default ("power" durability: a 200 survives power loss),
  ``NORMAL`` on request ("process" durability: survives kill -9, not power loss).
- Dedupe and enqueue happen in one transaction; dedupe keys live in their own table so that
  purging old deliveries never forgets a key inside its window (7 days by default).
- The request path writes only what a durable, deduplicated 200 needs: the dedupe key and an
  append to the ingest log (table ``ingest``: an integer key and no index). The consumer folds
  the log into ``deliveries`` (with the indexes that claims and the history need) in batches of
  at most ``FOLD_ROWS`` at the start of each claim; every history read looks at both tables, so
  an accepted delivery is never invisible.
- Concurrent enqueues in one process share a commit (and its fsync): the first caller to get the
  commit lock writes everything queued so far; the others find their work done. Event-loop
  callers (``aenqueue``) hand their write to one writer thread per queue and process, which
  commits everything waiting at once; the coroutine awaits a future, so the loop never blocks
  on the disk and no request takes a thread-pool job.
- Workers claim with ``BEGIN IMMEDIATE`` and a lease with a fencing token, so a crashed worker's
  delivery comes back after the lease and a stale worker cannot ack.
- No connection exists before it is first used in a process and thread, so a gunicorn
  ``--preload`` fork never inherits one (sqlite.org/howtocorrupt.html §2.6).

This module imports nothing outside the standard library and webhook_guard.core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal

from webhook_guard.core import events
from webhook_guard.core.deadline import store_deadline
from webhook_guard.core.delivery import Delivery, claimed_delivery, decode_headers
from webhook_guard.core.queue import Enqueued, EnqueueResult, Rejection
from webhook_guard.core.records import (  # re-exported: their home before they moved to the core
    ATTEMPT_OUTCOMES,
    DEFAULT_DEDUPE_SECONDS,
    DEFAULT_MAX_REJECTIONS,
    DEFAULT_RETENTION_SECONDS,
    FAILED_STATUSES,
    STATUSES,
    AttemptRecord,
    AttemptResult,
    Claimed,
    DeliveryRecord,
    RejectionRecord,
)
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable

__all__ = [
    "DEFAULT_DEDUPE_SECONDS",
    "DEFAULT_MAX_REJECTIONS",
    "DEFAULT_RETENTION_SECONDS",
    "FAILED_STATUSES",
    "STATUSES",
    "AttemptRecord",
    "Claimed",
    "DeliveryRecord",
    "Durability",
    "RejectionRecord",
    "SQLiteQueue",
]

Durability = Literal["power", "process"]
logger = logging.getLogger("webhook_guard.queues")
# Below the sender's usual 10 s timeout, so a locked database answers 503 instead of timing out:
# every request gets its answer within this budget, however many wait for one commit.
BUSY_TIMEOUT_MS = 5000
# Recording a rejection waits at most this long for the store; then it is dropped (and counted).
REJECTION_BUDGET_SECONDS = 0.05
# The writer thread that commits for event loops ends after this long with nothing to write.
WRITER_IDLE_SECONDS = 5.0
# Maintenance (purge) holds the write lock this long at most per transaction (a little more for
# the first chunk), then pauses longer than SQLite's longest busy-handler sleep (100 ms), so a
# writer waiting for the lock gets it between chunks.
PURGE_TRANSACTION_SECONDS = 0.03
PURGE_PAUSE_SECONDS = 0.12
# WAL pages after which a commit runs a checkpoint, with "process" durability (SQLite's own
# default, 1 000, with "power"). Every request waiting on that commit waits for the checkpoint
# and its two fsyncs; a quarter of the pages a time halves that wait (ASGI p99 at 16
# connections 9.5-10 -> 4.6-5 ms in-process) at the same throughput, while with "power"
# durability, whose every commit already fsyncs, the extra checkpoints cost throughput.
PROCESS_AUTOCHECKPOINT_PAGES = 250
# The writer thread (the event loops' commits) does not checkpoint inside a commit: every request
# waiting on that commit would wait for the copy and its fsyncs. A checkpointer thread copies the
# WAL into the database beside the writes, every this many rows the writer commits, then holds
# this process's writers only for a second, short pass over what arrived meanwhile, so the next
# write starts the log over (a pass run beside continuous writes never catches up with them, and
# the log would grow without bound). Measured in-process, 16 concurrent ``areceive`` on one
# core: p99 7.0-7.1 -> 5.1-5.7 ms with power durability and 5.5-7.4 -> 4.6-5.1 ms with process
# durability; throughput about 10 % lower with power durability (the two threads' fsyncs
# compete) and higher with process durability; the WAL stays under 3 MB.
CHECKPOINT_EVERY_ROWS = 250
# The writer's own connection still checkpoints past this many WAL pages: the bound on the log if
# the checkpointer cannot catch up (another process writing all the time, say).
WRITER_AUTOCHECKPOINT_PAGES = 4000


# Raised whenever _SCHEMA changes, so existing files get the new tables and indexes.
SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id          TEXT PRIMARY KEY,
    endpoint    TEXT NOT NULL,
    scheme      TEXT NOT NULL,
    event_type  TEXT,
    dedupe_key  TEXT,
    received_at REAL NOT NULL,
    headers     TEXT NOT NULL,
    body        BLOB NOT NULL,
    body_sha256 TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'queued',
    engine      TEXT NOT NULL DEFAULT 'sqlite',
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_at      REAL NOT NULL,
    lease_until REAL,
    lease_token TEXT,
    last_error  TEXT,
    updated_at  REAL NOT NULL
);
DROP INDEX IF EXISTS deliveries_due;
DROP INDEX IF EXISTS deliveries_ready;
DROP INDEX IF EXISTS deliveries_leased;
CREATE INDEX IF NOT EXISTS deliveries_due_by_endpoint
    ON deliveries(status, engine, endpoint, run_at);
CREATE INDEX IF NOT EXISTS deliveries_lease_by_endpoint
    ON deliveries(status, engine, endpoint, lease_until);
CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries(received_at);
CREATE TABLE IF NOT EXISTS ingest (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    scheme      TEXT NOT NULL,
    event_type  TEXT,
    dedupe_key  TEXT,
    received_at REAL NOT NULL,
    headers     TEXT NOT NULL,
    body        BLOB NOT NULL,
    body_sha256 TEXT NOT NULL,
    queued_at   REAL NOT NULL,
    engine      TEXT NOT NULL DEFAULT 'sqlite'
);
CREATE TABLE IF NOT EXISTS dedupe (
    endpoint    TEXT NOT NULL,
    key         TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (endpoint, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    outcome     TEXT,
    error       TEXT,
    traceback   TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts(delivery_id, id);
CREATE TABLE IF NOT EXISTS rejections (
    id          INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    endpoint    TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    remote_addr TEXT,
    reason      TEXT NOT NULL,
    hint        TEXT NOT NULL,
    body_size   INTEGER NOT NULL,
    body_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS rejections_received ON rejections(received_at);
CREATE TABLE IF NOT EXISTS consumers (
    id          TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    endpoints   TEXT NOT NULL,
    seen_at     REAL NOT NULL
);
"""

# The request path's write, for this queue's own deliveries and for those a broker carries
# (``reserve``): an append to the ingest log (integer key, no index), a fraction of the pages a row
# in ``deliveries`` with its text key and three indexes costs. The log is folded into
# ``deliveries`` in batches (``_fold``): by the consumer's claims, and by a broker worker's first
# report on a delivery not folded yet. Every read of the history looks at both, so nothing
# accepted is ever invisible.
_APPEND_INGEST = """
INSERT INTO ingest (id, endpoint, scheme, event_type, dedupe_key, received_at, headers, body,
                    body_sha256, queued_at, engine)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_FOLD_INGEST = """
INSERT INTO deliveries (id, endpoint, scheme, event_type, dedupe_key, received_at, headers,
                        body, body_sha256, status, run_at, updated_at, engine)
SELECT id, endpoint, scheme, event_type, dedupe_key, received_at, headers, body, body_sha256,
       'queued', queued_at, queued_at, engine
  FROM ingest WHERE seq <= ? ORDER BY seq
"""
# A row of the ingest log as the history shows a delivery (the columns of DeliveryRecord, then
# headers and body): queued, no attempt yet.
_INGEST_RECORD = """
SELECT id, endpoint, scheme, event_type, dedupe_key, received_at, 'queued', 0, queued_at, NULL,
       queued_at, length(body), body_sha256, headers, body FROM ingest
"""
# Rows folded per transaction at most, so a consumer starting on a large backlog never holds
# the write lock for long (about 10 ms for 500 rows of 1 KiB).
FOLD_ROWS = 500

# An expired key no longer dedupes: the upsert takes it over (changes() == 1 again).
_CLAIM_KEY = """
INSERT INTO dedupe (endpoint, key, delivery_id, expires_at) VALUES (?, ?, ?, ?)
ON CONFLICT (endpoint, key) DO UPDATE
    SET delivery_id = excluded.delivery_id, expires_at = excluded.expires_at
    WHERE dedupe.expires_at < ?
"""
_INSERT_REJECTION = """
INSERT INTO rejections (received_at, endpoint, method, path, remote_addr, reason, hint,
                        body_size, body_sha256)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# The earliest due deliveries of this queue, per endpoint: the first queued, the first retrying
# and the first expired lease, each one index seek (an OR across them, or an IN over endpoints,
# would scan every waiting row). Rows recorded for another engine (a broker carries them) are
# never claimed here.
_DUE_OF_ENDPOINT = """
    SELECT * FROM (SELECT id, run_at AS due FROM deliveries WHERE status = 'queued'
                   AND engine = 'sqlite' AND endpoint = ? ORDER BY run_at LIMIT 1)
    UNION ALL
    SELECT * FROM (SELECT id, run_at AS due FROM deliveries WHERE status = 'retrying'
                   AND engine = 'sqlite' AND endpoint = ? ORDER BY run_at LIMIT 1)
    UNION ALL
    SELECT * FROM (SELECT id, lease_until AS due FROM deliveries WHERE status = 'processing'
                   AND engine = 'sqlite' AND endpoint = ? ORDER BY lease_until LIMIT 1)
"""
_DUE_OF_ANY = """
    SELECT * FROM (SELECT id, run_at AS due FROM deliveries
                    WHERE status = 'queued' AND engine = 'sqlite' ORDER BY run_at LIMIT 1)
    UNION ALL
    SELECT * FROM (SELECT id, run_at AS due FROM deliveries
                    WHERE status = 'retrying' AND engine = 'sqlite' ORDER BY run_at LIMIT 1)
    UNION ALL
    SELECT * FROM (SELECT id, lease_until AS due FROM deliveries
                    WHERE status = 'processing' AND engine = 'sqlite' ORDER BY lease_until LIMIT 1)
"""


def _earliest(endpoints: Collection[str] | None) -> tuple[str, list[str]]:
    """The query (and its parameters) for the earliest due delivery of ``endpoints``."""
    if endpoints is None:
        return f"SELECT id, due FROM ({_DUE_OF_ANY}) ORDER BY due LIMIT 1", []
    names = sorted(set(endpoints))
    if not names:
        return "SELECT NULL, NULL WHERE 0", []
    union = " UNION ALL ".join([_DUE_OF_ENDPOINT] * len(names))
    return f"SELECT id, due FROM ({union}) ORDER BY due LIMIT 1", [
        name for name in names for _ in range(3)
    ]


class _Pending:
    """One write waiting for the next group commit."""

    __slots__ = (
        *("deadline", "delivery", "done", "engine"),
        *("error", "finished", "future", "rejection", "result"),
    )

    def __init__(
        self,
        deadline: float,
        delivery: Delivery | None = None,
        rejection: Rejection | None = None,
        engine: str = "sqlite",
    ) -> None:
        self.deadline = deadline  # time.monotonic() by which the caller must have its answer
        self.delivery = delivery
        self.engine = engine
        self.rejection = rejection
        self.done = False
        # Held until whoever commits (or fails) the batch releases it: a bare lock, since an
        # Event (a Condition and its lock) costs more to make and set than the rest of the
        # bookkeeping of a request, and most writers never wait on it (they lead the batch).
        self.finished = threading.Lock()
        self.finished.acquire()
        self.result: EnqueueResult | None = None
        self.error: BaseException | None = None
        # An event-loop caller's future, resolved on its loop once the batch is committed.
        self.future: asyncio.Future[None] | None = None


def _ingest_row(delivery: Delivery, now: float, engine: str) -> tuple[Any, ...]:
    """The parameters of ``_APPEND_INGEST`` for ``delivery``, logged at ``now`` for ``engine``."""
    d = delivery
    return (
        d.id,
        d.endpoint,
        d.scheme,
        d.event_type,
        d.dedupe_key,
        d.received_at,
        json.dumps(list(d.headers)),
        d.body,
        d.body_sha256,
        now,
        engine,
    )


def _settle(batch: list[_Pending]) -> None:
    """Wake whoever waits for the writes of a committed (or failed) batch: each thread by its
    lock, and each event loop once for all its coroutines (one ``call_soon_threadsafe``, a
    write to the loop's wake-up pipe, per loop and batch rather than per request)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for item in batch:
        item.finished.release()
        future = item.future
        if future is not None:
            by_loop.setdefault(future.get_loop(), []).append(future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve_all, futures)


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        _resolve(future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # not cancelled by a caller that gave up, nor timed out
        future.set_result(None)


async def _settled(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], within: float
) -> None:
    """Wait until ``future`` is resolved or ``within`` seconds have passed, whichever first."""
    timer = loop.call_later(max(0.0, within), _resolve, future)
    try:
        await future
    finally:
        timer.cancel()


class SQLiteQueue:
    """Durable queue + delivery history in one SQLite file (WAL), shared by every process on a host.

    Args:
        path: the database file; created with its schema on first use.
        durability: ``"power"`` (``synchronous=FULL``, the default) or ``"process"``
            (``synchronous=NORMAL``: survives a killed process, not a power cut).
        dedupe_seconds: how long a delivery id keeps deduping (at least a sender's retry horizon).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "webhook_guard.db",
        *,
        durability: Durability = "power",
        dedupe_seconds: float = DEFAULT_DEDUPE_SECONDS,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        if durability not in ("power", "process"):
            raise ConfigurationError("SQLiteQueue durability must be 'power' or 'process'")
        self.path = os.fspath(path)
        self.durability: Durability = durability
        self.dedupe_seconds = dedupe_seconds
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._pid: int | None = None
        self._guard_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self.enqueued = threading.Event()  # wakes this process's embedded worker
        self._writer: threading.Thread | None = None  # commits what event loops hand it
        self._writer_wake = threading.Event()
        self._wake_pending: set[asyncio.AbstractEventLoop] = set()  # loops with a wake-up due
        self._checkpointer: threading.Thread | None = None  # checkpoints beside the writer
        self._checkpoint_wake = threading.Event()
        self.rejections_dropped = 0  # rejections not recorded because the store was busy
        self._last_drop_warning = 0.0

    def __repr__(self) -> str:
        return f"<SQLiteQueue {self.path!r} durability={self.durability}>"

    # -- connections -------------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child, drop the parent's connections and locks unused."""
        pid = os.getpid()
        if self._pid != pid:
            with self._guard_lock:
                if self._pid != pid:
                    self._local = threading.local()
                    self._pending = []
                    self._pending_lock = threading.Lock()
                    self._commit_lock = threading.Lock()
                    self.enqueued = threading.Event()
                    self._writer = None  # threads do not survive a fork
                    self._writer_wake = threading.Event()
                    self._wake_pending = set()
                    self._checkpointer = None
                    self._checkpoint_wake = threading.Event()
                    self._pid = pid

    def _connection(self) -> sqlite3.Connection:
        self._after_fork()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._file_changed():
            # Replaced or deleted under us: writing on would acknowledge into a file nobody
            # reads. This call fails (503); the next one opens the file now at the path.
            self.close()
            raise QueueUnavailable(f"{self.path}: the database file was replaced or deleted")
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._local.inode = _inode(self.path)
            self._local.busy_ms = int(self.busy_timeout_ms)
        return conn

    def _file_changed(self) -> bool:
        return _inode(self.path) != getattr(self._local, "inode", None)

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise QueueUnavailable(f"directory of the queue database does not exist: {directory}")
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=self.busy_timeout_ms / 1000,
                check_same_thread=True,
            )
        except sqlite3.Error as error:  # not a file SQLite can open (a directory, no rights)
            raise QueueUnavailable(f"{self.path}: {error}") from error
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            self._prepare(conn)
        except sqlite3.Error as error:
            conn.close()
            raise QueueUnavailable(f"{self.path}: {error}") from error
        if self.durability == "power":
            conn.execute("PRAGMA synchronous=FULL")
        else:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={PROCESS_AUTOCHECKPOINT_PAGES}")
        if getattr(self._local, "is_writer", False):  # the checkpointer thread does it
            conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """WAL and the schema. Switching a new file to WAL while another connection opens it
        fails with "database is locked" at once, without waiting for the busy timeout (two
        threads of a new process race here), so that step is retried until the timeout."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                # A file already at this schema needs no DDL, so a connection opened while
                # another process holds the write lock does not wait for it.
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    conn.executescript(_SCHEMA)  # idempotent: every process may run it
                    self._migrate(conn)
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        if str(mode).lower() != "wal":
            raise QueueUnavailable(
                f"{self.path}: cannot switch to WAL (got {mode}); is it on a network disk?"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """What ``CREATE ... IF NOT EXISTS`` cannot do to an older file, then the version, in one
        transaction: another process sees the new version only with the columns it implies."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            ingest = {row[1] for row in conn.execute("PRAGMA table_info(ingest)")}
            if "engine" not in ingest:  # schema 3 logged only this queue's own deliveries
                conn.execute("ALTER TABLE ingest ADD COLUMN engine TEXT NOT NULL DEFAULT 'sqlite'")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: read-then-write must hold the write lock from the start, or a
        concurrent writer makes it fail with SQLITE_BUSY without waiting. ``conn``: this
        thread's connection when the caller already has it (one file check per request)."""
        try:
            if conn is None:
                conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            self._heal(error)
            raise QueueUnavailable(f"{self.path}: {error}") from error
        try:
            yield conn
        except BaseException as error:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                self._heal(error)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._heal(error)
            raise QueueUnavailable(f"{self.path}: commit failed: {error}") from error

    def _heal(self, error: sqlite3.Error) -> None:
        """After an error other than a busy database, drop this thread's connection so the next
        call opens a fresh one: a connection opened while the file was read-only stays
        read-only, and one that saw corruption may hold stale state."""
        if "locked" not in str(error) and "busy" not in str(error):
            with contextlib.suppress(Exception):
                self.close()

    def close(self) -> None:
        """Close the calling thread's connection (other threads keep theirs)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            del self._local.conn
            if self._pid == os.getpid():
                conn.close()

    # -- the request side: enqueue and record rejections, group-committed --------------------

    def enqueue(self, delivery: Delivery) -> EnqueueResult:
        """Dedupe and store ``delivery`` durably; answer within the busy budget (and the
        request's deadline, ``core.deadline``) or raise QueueUnavailable."""
        return self._enqueue_by(delivery, self._deadline())

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult:
        """``enqueue`` without blocking the event loop: the write goes to this process's writer
        thread, which commits everything waiting at once (every request in flight shares the
        commit and its fsync), and the coroutine awaits its future (no thread-pool job)."""
        result = await self._asubmit(_Pending(self._deadline(), delivery=delivery))
        assert result is not None  # a delivery always gets a result
        return result

    async def _asubmit(self, item: _Pending) -> EnqueueResult | None:
        """``_submit`` for a coroutine: hand ``item`` to the writer and await it, within
        ``item.deadline`` (a batch already writing it gets one more second, as in ``_submit``).
        A timer on the loop, not ``wait_for``: no task or extra future per request."""
        self._after_fork()
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        with self._pending_lock:
            self._pending.append(item)
        if loop not in self._wake_pending:
            # Wake the writer once per turn of the loop, after every request that is ready now
            # has added its write: waking it at each append let it take the GIL at the loop's
            # next system call and commit one or two rows at a time.
            self._wake_pending.add(loop)
            loop.call_soon(self._wake_for, loop)
        await _settled(loop, item.future, item.deadline - time.monotonic())
        if not item.done:
            with self._pending_lock:
                taken = item not in self._pending
                if not taken:
                    self._pending.remove(item)
            if not taken:
                raise QueueUnavailable(
                    f"{self.path}: the store did not take the write within the request's "
                    "budget (another writer holds it)"
                )
            # A batch is writing it: its busy wait ends by this deadline or sooner. The new
            # future is in place before `done` is read, so the writer's settle cannot be missed.
            item.future = loop.create_future()
            if not item.done:
                await _settled(loop, item.future, 1.0)
            if not item.done:
                raise QueueUnavailable(f"{self.path}: no answer from the group commit in time")
        if item.error is not None:
            raise item.error
        if self._wakes_consumer(item):
            self.enqueued.set()
        return item.result

    def _wakes_consumer(self, item: _Pending) -> bool:
        """Whether ``item`` stored a new delivery of this queue and the consumer's event is not
        set yet (``set()`` takes a lock and notifies; the consumer clears the event before it
        claims, so one set per wake-up is enough)."""
        result = item.result
        return (
            item.engine == "sqlite"
            and result is not None
            and result.status is Enqueued.NEW
            and not self.enqueued.is_set()
        )

    def _wake_for(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake_pending.discard(loop)
        self._wake_writer()

    def _wake_writer(self) -> None:
        """Start this process's writer thread on first use, and wake it."""
        if self._writer is None or not self._writer.is_alive():
            with self._guard_lock:
                if self._writer is None or not self._writer.is_alive():
                    self._writer = self._start_thread("writer", self._write_forever)
        self._writer_wake.set()

    def _start_thread(self, role: str, target: Callable[[], None]) -> threading.Thread:
        """A daemon thread of this queue, named for ``ps``/``py-spy`` (its role and file)."""
        thread = threading.Thread(
            target=target,
            name=f"webhook_guard sqlite {role} {os.path.basename(self.path)}",
            daemon=True,
        )
        thread.start()
        return thread

    def _write_forever(self) -> None:
        """The writer thread: whenever woken, commit everything pending in one transaction
        (under the same commit lock as threads that commit for themselves). After
        ``WRITER_IDLE_SECONDS`` with nothing to write it closes its connection and ends (a
        queue used once, as in a test or a short script, leaves no thread and no open file
        behind); the next write starts another."""
        me = threading.current_thread()
        wake = self._writer_wake
        self._local.is_writer = True
        rows = 0  # committed since the checkpointer was last woken
        try:
            while True:
                if not wake.wait(WRITER_IDLE_SECONDS) and self._retire(me):
                    return
                wake.clear()
                while True:
                    with self._commit_lock:
                        with self._pending_lock:
                            batch, self._pending = self._pending, []
                        if not batch:
                            break
                        self._commit(batch)
                    rows += len(batch)
                    if rows >= CHECKPOINT_EVERY_ROWS:
                        rows = 0
                        self._wake_checkpointer()
        finally:
            self.close()  # this thread's connection

    def _wake_checkpointer(self) -> None:
        """Start this process's checkpointer thread if none runs, and wake it (under the guard
        lock, where an idle checkpointer decides to end, so no wake-up is lost)."""
        with self._guard_lock:
            if self._checkpointer is None:
                self._checkpointer = self._start_thread("checkpointer", self._checkpoint_forever)
            self._checkpoint_wake.set()

    def _checkpoint_forever(self) -> None:
        """The checkpointer thread: whenever woken, checkpoint (``_checkpoint_beside_writes``);
        after ``WRITER_IDLE_SECONDS`` without a wake-up it closes its connection and ends."""
        me = threading.current_thread()
        wake = self._checkpoint_wake
        try:
            while True:
                if not wake.wait(WRITER_IDLE_SECONDS):
                    with self._guard_lock:
                        if not wake.is_set():
                            if self._checkpointer is me:
                                self._checkpointer = None
                            return
                wake.clear()
                self._checkpoint_beside_writes()
        finally:
            self.close()  # this thread's connection

    def _checkpoint_beside_writes(self) -> None:
        """Copy the WAL into the database while the writer goes on, then once more with this
        process's writers held: that pass copies only what they wrote meanwhile, and leaves the
        log wholly copied, so the next write starts it over (``CHECKPOINT_EVERY_ROWS``). Neither
        pass waits for a lock (``PASSIVE``); a failure is left to the next wake-up, and to the
        writer's own bound (``WRITER_AUTOCHECKPOINT_PAGES``)."""
        try:
            conn = self._connection()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with self._commit_lock:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except (sqlite3.Error, QueueUnavailable) as error:
            logger.debug("checkpoint of %s skipped: %s", self.path, error)

    def _retire(self, me: threading.Thread) -> bool:
        """Whether the idle writer ``me`` may end: nothing is pending, and it is no longer the
        writer. Decided under the pending lock, so a write appended afterwards finds no writer
        and starts one, and a write appended before keeps this one."""
        with self._guard_lock, self._pending_lock:
            if self._writer is not me:
                return True  # replaced (after a fork, or it was thought dead)
            if self._pending:
                return False
            self._writer = None
            return True

    def _enqueue_by(self, delivery: Delivery, deadline: float) -> EnqueueResult:
        result = self._submit(_Pending(deadline, delivery=delivery))
        assert result is not None  # a delivery always gets a result
        return result

    def record_rejection(self, rejection: Rejection) -> None:
        """Best effort: waits at most ``REJECTION_BUDGET_SECONDS`` for the store (a sender is
        never kept waiting to record its rejection); when the store is busy the record is
        dropped and counted in ``rejections_dropped``."""
        try:
            self._submit(_Pending(time.monotonic() + REJECTION_BUDGET_SECONDS, rejection=rejection))
        except QueueUnavailable as error:
            self._dropped_rejection(error)

    def _dropped_rejection(self, error: QueueUnavailable) -> None:
        """Count (and now and then log) a rejection the busy store could not record."""
        self.rejections_dropped += 1
        events.notify_store_error("record_rejection", error)
        now = time.monotonic()
        if now - self._last_drop_warning > 10.0:  # a flood of rejections: one line per 10 s
            self._last_drop_warning = now
            logger.warning(
                "rejections not recorded while the store is busy (%d so far): %s",
                self.rejections_dropped,
                error,
            )

    def _deadline(self) -> float:
        """When the write must be done (``core.deadline.store_deadline``): the busy budget from
        now, or the request's deadline if sooner, but never less than a short wait for a store
        that is free."""
        return store_deadline(self.busy_timeout_ms / 1000)

    async def arecord_rejection(self, rejection: Rejection) -> None:
        """``record_rejection`` through the writer thread, never blocking the event loop."""
        item = _Pending(time.monotonic() + REJECTION_BUDGET_SECONDS, rejection=rejection)
        try:
            await self._asubmit(item)
        except QueueUnavailable as error:
            self._dropped_rejection(error)

    def _submit(self, item: _Pending) -> EnqueueResult | None:
        """Group commit under a deadline: whoever holds the commit lock writes everything
        waiting; a caller that cannot get its answer by ``item.deadline`` (the lock held by a
        batch stuck behind another process's write lock) gives up with QueueUnavailable, so
        every request is answered within the budget, queued behind others or not."""
        self._after_fork()  # resets the locks first if this process was forked
        with self._pending_lock:
            self._pending.append(item)
        if self._commit_lock.acquire(timeout=max(0.0, item.deadline - time.monotonic())):
            try:
                if not item.done:
                    with self._pending_lock:
                        batch, self._pending = self._pending, []
                    self._commit(batch)
            finally:
                self._commit_lock.release()
        else:
            with self._pending_lock:
                taken = item not in self._pending
                if not taken:
                    self._pending.remove(item)
            if not taken:
                raise QueueUnavailable(
                    f"{self.path}: the store did not take the write within the request's "
                    "budget (another writer holds it)"
                )
            # A leader took it into its batch, whose busy wait ends by the earliest deadline
            # in the batch (this one's or sooner): its answer comes in time.
            item.finished.acquire(timeout=max(0.0, item.deadline - time.monotonic()) + 1.0)
            if not item.done:
                raise QueueUnavailable(f"{self.path}: no answer from the group commit in time")
        if item.error is not None:
            raise item.error
        if self._wakes_consumer(item):
            self.enqueued.set()
        return item.result

    def _commit(self, batch: list[_Pending]) -> None:
        now = time.time()
        try:
            try:
                conn = self._connection()
                # Wait for another process's write lock only as long as the most pressed
                # caller in the batch can (a PRAGMA only when that is shorter than usual).
                budget = min(item.deadline for item in batch) - time.monotonic()
                self._patience(conn, min(int(self.busy_timeout_ms), max(1, int(budget * 1000))))
            except sqlite3.Error as error:
                raise QueueUnavailable(f"{self.path}: {error}") from error
            try:
                with self._transaction(conn):
                    results = [self._write(conn, item, now) for item in batch]
            finally:
                with contextlib.suppress(sqlite3.Error):  # the connection's usual patience
                    self._patience(conn, int(self.busy_timeout_ms))
        except Exception as error:
            failure = (
                error
                if isinstance(error, QueueUnavailable)
                else QueueUnavailable(f"{self.path}: {error}")
            )
            for item in batch:
                item.error, item.done = failure, True
            _settle(batch)
            return
        for item, result in zip(batch, results, strict=True):
            item.result, item.done = result, True
        _settle(batch)

    def _patience(self, conn: sqlite3.Connection, busy_ms: int) -> None:
        """Set this thread's busy timeout to ``busy_ms`` unless it is that already (within
        50 ms): most requests arrive with the whole budget and need no PRAGMA at all."""
        if abs(getattr(self._local, "busy_ms", -1) - busy_ms) > 50:
            conn.execute(f"PRAGMA busy_timeout={busy_ms}")
            self._local.busy_ms = busy_ms

    def _write(self, conn: sqlite3.Connection, item: _Pending, now: float) -> EnqueueResult | None:
        if item.rejection is not None:
            r = item.rejection
            conn.execute(
                _INSERT_REJECTION,
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
            return None
        d = item.delivery
        assert d is not None
        if d.dedupe_key is not None:
            claimed = conn.execute(
                _CLAIM_KEY, (d.endpoint, d.dedupe_key, d.id, now + self.dedupe_seconds, now)
            ).rowcount
            if claimed == 0:
                first = conn.execute(
                    "SELECT delivery_id FROM dedupe WHERE endpoint = ? AND key = ?",
                    (d.endpoint, d.dedupe_key),
                ).fetchone()
                return EnqueueResult(Enqueued.DUPLICATE, first[0])
        conn.execute(_APPEND_INGEST, _ingest_row(d, now, item.engine))
        return EnqueueResult(Enqueued.NEW, d.id)

    # -- the worker side: claim, heartbeat, ack, retry, dead ---------------------------------

    @property
    def store_key(self) -> str:
        """The database file: every queue object on it shares one consumer and one set of
        endpoint names in a process."""
        return "sqlite:" + os.path.realpath(self.path)

    def claim(
        self, lease_seconds: float, endpoints: Collection[str] | None = None
    ) -> Claimed | None:
        """Lease the next due delivery of ``endpoints`` (None: any endpoint), or one whose
        worker's lease expired, or None."""
        now = time.time()
        token = uuid.uuid4().hex
        query, params = _earliest(endpoints)
        with self._transaction() as conn:
            self._fold(conn)
            row = conn.execute(query, params).fetchone()
            if row is None or row[1] > now:
                return None
            delivery_id = row[0]
            # An attempt left unfinished means its worker died holding the lease.
            conn.execute(
                "UPDATE attempts SET finished_at = ?, outcome = 'lost',"
                " error = 'the worker stopped before finishing (lease expired)'"
                " WHERE delivery_id = ? AND finished_at IS NULL",
                (now, delivery_id),
            )
            conn.execute(
                "UPDATE deliveries SET status = 'processing', attempts = attempts + 1,"
                " lease_until = ?, lease_token = ?, updated_at = ? WHERE id = ?",
                (now + lease_seconds, token, now, delivery_id),
            )
            record = conn.execute(
                "SELECT id, endpoint, scheme, event_type, dedupe_key, received_at, headers, body,"
                " attempts FROM deliveries WHERE id = ?",
                (delivery_id,),
            ).fetchone()
            conn.execute(
                "INSERT INTO attempts (delivery_id, attempt, started_at) VALUES (?, ?, ?)",
                (delivery_id, record[8], now),
            )
        return Claimed(claimed_delivery(record), token)

    def _fold(self, conn: sqlite3.Connection, through: int | None = None) -> int:
        """Move the oldest ``FOLD_ROWS`` deliveries of the ingest log (or, with ``through``,
        every one up to that ``seq``) into ``deliveries`` with their indexes, inside the caller's
        write transaction; how many moved."""
        last: Any = (through,)
        if through is None:
            last = conn.execute(
                "SELECT seq FROM ingest ORDER BY seq LIMIT 1 OFFSET ?", (FOLD_ROWS - 1,)
            ).fetchone()
        if last is None:
            last = conn.execute("SELECT max(seq) FROM ingest").fetchone()
            if last is None or last[0] is None:
                return 0
        conn.execute(_FOLD_INGEST, (last[0],))
        return conn.execute("DELETE FROM ingest WHERE seq <= ?", (last[0],)).rowcount

    def heartbeat(self, claimed: Claimed, lease_seconds: float) -> bool:
        """Extend the lease of a long handler; False if it was lost to another worker."""
        with self._transaction() as conn:
            return (
                conn.execute(
                    "UPDATE deliveries SET lease_until = ? WHERE id = ? AND lease_token = ?",
                    (time.time() + lease_seconds, claimed.delivery.id, claimed.token),
                ).rowcount
                == 1
            )

    def ack(self, claimed: Claimed, note: str | None = None) -> bool:
        """Record a processed attempt; False for a worker that lost its lease."""
        return self._finish(claimed, "processed", "processed", None, note, None)

    def retry_later(
        self, claimed: Claimed, delay: float, error: str, traceback: str | None
    ) -> bool:
        """Record a failed attempt, to run again in ``delay`` seconds; False if lease was lost."""
        return self._finish(claimed, "retrying", "failed", delay, error, traceback)

    def dead(self, claimed: Claimed, error: str, traceback: str | None) -> bool:
        """Record a dead letter; False for a worker that lost its lease."""
        return self._finish(claimed, "dead", "dead", None, error, traceback)

    def _finish(
        self,
        claimed: Claimed,
        status: str,
        outcome: str,
        delay: float | None,
        error: str | None,
        traceback: str | None,
    ) -> bool:
        """Record how an attempt ended; a no-op (False) for a worker that lost its lease."""
        now = time.time()
        with self._transaction() as conn:
            changed = conn.execute(
                "UPDATE deliveries SET status = ?, run_at = ?, lease_until = NULL,"
                " lease_token = NULL, last_error = ?, updated_at = ?"
                " WHERE id = ? AND lease_token = ?",
                (
                    status,
                    now + (delay or 0.0),
                    error if status != "processed" else None,
                    now,
                    claimed.delivery.id,
                    claimed.token,
                ),
            ).rowcount
            if changed:
                conn.execute(
                    "UPDATE attempts SET finished_at = ?, outcome = ?, error = ?, traceback = ?"
                    " WHERE delivery_id = ? AND attempt = ? AND finished_at IS NULL",
                    (now, outcome, error, traceback, claimed.delivery.id, claimed.delivery.attempt),
                )
        return changed == 1

    def finish(self, claimed: Claimed, result: AttemptResult) -> bool:
        """Record how an attempt ended; a no-op (False) for a worker that lost its lease."""
        if result.status == "processed":
            return self.ack(claimed)
        if result.status == "retrying":
            return self.retry_later(
                claimed, result.delay or 0.0, result.error or "", result.traceback
            )
        if result.status == "ignored":
            return self._finish(claimed, "ignored", "ignored", None, result.error, None)
        return self.dead(claimed, result.error or "", result.traceback)

    def next_due_in(self, endpoints: Collection[str] | None = None) -> float | None:
        """Seconds until the next delivery of ``endpoints`` (None: any) is due (0 if one is due
        now), None if none waits."""
        conn = self._connection()
        if conn.execute("SELECT 1 FROM ingest LIMIT 1").fetchone() is not None:
            return 0.0  # not folded yet: the next claim folds it (whatever its endpoint)
        query, params = _earliest(endpoints)
        row = conn.execute(query, params).fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[1]) - time.time())

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
        conn = self._connection()
        rows = conn.execute(
            "SELECT id, endpoint, scheme, event_type, dedupe_key, received_at, status,"
            " attempts, run_at, last_error, updated_at, length(body), body_sha256"
            " FROM deliveries"
            f" {where} ORDER BY received_at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        if not statuses or "queued" in statuses:  # the ingest log holds queued ones only
            ingest_where, ingest_params = _filters((), since, endpoint, before)
            rows += [
                row[:13]
                for row in conn.execute(
                    f"SELECT * FROM ({_INGEST_RECORD}) {ingest_where}"
                    " ORDER BY received_at DESC, id DESC LIMIT ?",
                    (*ingest_params, limit),
                )
            ]
            rows.sort(key=lambda row: (row[5], row[0]), reverse=True)
        return [DeliveryRecord(*row) for row in rows[:limit]]

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
        rows = (
            self._connection()
            .execute(
                "SELECT id, received_at, endpoint, method, path, remote_addr, reason, hint,"
                f" body_size, body_sha256 FROM rejections {where}"
                " ORDER BY received_at DESC, id DESC LIMIT ?",
                (*params, limit),
            )
            .fetchall()
        )
        return [RejectionRecord(*row) for row in rows]

    def match_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to ``limit`` delivery ids that start with ``prefix`` (two tell ambiguous)."""
        conn = self._connection()
        found = {
            str(row[0])
            for table in ("deliveries", "ingest")
            for row in conn.execute(
                f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                (prefix, prefix + "\uffff", limit),
            )
        }
        return sorted(found)[:limit]

    def get_rejection(self, rejection_id: int) -> RejectionRecord | None:
        """One rejected request, by the number ``history`` shows after its ``r``."""
        row = (
            self._connection()
            .execute(
                "SELECT id, received_at, endpoint, method, path, remote_addr, reason, hint,"
                " body_size, body_sha256 FROM rejections WHERE id = ?",
                (rejection_id,),
            )
            .fetchone()
        )
        return RejectionRecord(*row) if row is not None else None

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery with headers, body and every attempt; ``delivery_id`` may be a prefix."""
        conn = self._connection()
        span = (delivery_id, delivery_id + "\uffff")
        rows = conn.execute(
            "SELECT id, endpoint, scheme, event_type, dedupe_key, received_at, status, attempts,"
            " run_at, last_error, updated_at, length(body), body_sha256, headers, body"
            " FROM deliveries WHERE id >= ? AND id < ? LIMIT 2",
            span,
        ).fetchall()
        rows += conn.execute(f"{_INGEST_RECORD} WHERE id >= ? AND id < ? LIMIT 2", span).fetchall()
        if len(rows) != 1:
            return None
        row = rows[0]
        attempts = conn.execute(
            "SELECT attempt, started_at, finished_at, outcome, error, traceback FROM attempts"
            " WHERE delivery_id = ? ORDER BY id",
            (row[0],),
        ).fetchall()
        summary = DeliveryRecord(*row[:13])
        return replace(
            summary,
            headers=decode_headers(row[13]),
            body=bytes(row[14]),
            attempt_log=tuple(AttemptRecord(*a) for a in attempts),
        )

    def replay(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> int:
        """Queue deliveries of this queue again with a fresh attempt budget; return how many."""
        return len(self.mark_replayed(delivery_ids, statuses=statuses))

    def mark_replayed(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> list[str]:
        """Queue the given deliveries (or those in ``statuses``) again with a fresh attempt budget;
        returns their ids. A delivery in a worker's hands is left alone."""
        now = time.time()
        with self._transaction() as conn:
            if delivery_ids is not None:
                marks = ",".join("?" * len(delivery_ids))
                where, params = f"id IN ({marks})", list(delivery_ids)
            else:
                marks = ",".join("?" * len(statuses))
                where, params = f"status IN ({marks})", list(statuses)
            # A delivery in a worker's hands is not re-queued under it.
            ids = [
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM deliveries WHERE {where} AND status != 'processing'", params
                )
            ]
            conn.executemany(
                "UPDATE deliveries SET status = 'queued', attempts = 0, run_at = ?,"
                " updated_at = ?, lease_until = NULL, lease_token = NULL WHERE id = ?",
                [(now, now, i) for i in ids],
            )
            # Not folded yet: queued, with the whole attempt budget already.
            if delivery_ids is not None:
                ids += [
                    row[0] for row in conn.execute(f"SELECT id FROM ingest WHERE {where}", params)
                ]
            elif "queued" in statuses:
                ids += [row[0] for row in conn.execute("SELECT id FROM ingest")]
        return ids

    # -- the store side, for deliveries that a broker carries --------------------------------

    def reserve(self, delivery: Delivery, engine: str) -> EnqueueResult:
        """Dedupe and record a delivery a broker carries (the store side of broker queues)."""
        result = self._submit(_Pending(self._deadline(), delivery=delivery, engine=engine))
        assert result is not None  # a delivery always gets a result
        return result

    def release(self, delivery: Delivery) -> None:
        """Forget a reserved delivery and its dedupe key (its broker publish failed)."""
        with self._transaction() as conn:
            if conn.execute("DELETE FROM ingest WHERE id = ?", (delivery.id,)).rowcount == 0:
                conn.execute("DELETE FROM deliveries WHERE id = ?", (delivery.id,))
            conn.execute(
                "DELETE FROM dedupe WHERE endpoint = ? AND key = ? AND delivery_id = ?",
                (delivery.endpoint, delivery.dedupe_key, delivery.id),
            )

    def attempt_started(self, delivery_id: str, attempt: int) -> None:
        """Record that a broker worker began attempt ``attempt``."""
        now = time.time()
        with self._transaction() as conn:
            # Unfinished earlier attempts: their worker died, or (rarely) one is still finishing
            # after publishing this retry; attempt_finished then corrects its row.
            conn.execute(
                "UPDATE attempts SET finished_at = ?, outcome = 'lost',"
                " error = 'the worker stopped before finishing'"
                " WHERE delivery_id = ? AND finished_at IS NULL",
                (now, delivery_id),
            )
            self._update_folding(
                conn,
                delivery_id,
                "UPDATE deliveries SET status = 'processing', attempts = ?, updated_at = ?"
                " WHERE id = ?",
                (attempt, now, delivery_id),
            )
            conn.execute(
                "INSERT INTO attempts (delivery_id, attempt, started_at) VALUES (?, ?, ?)",
                (delivery_id, attempt, now),
            )

    def attempt_finished(self, delivery_id: str, attempt: int, result: AttemptResult) -> None:
        """Record how a broker worker's attempt ended, fenced by the attempt number."""
        now = time.time()
        outcome = ATTEMPT_OUTCOMES[result.status]
        with self._transaction() as conn:
            # Fenced by the attempt number: a later attempt that already started owns the status.
            self._update_folding(
                conn,
                delivery_id,
                "UPDATE deliveries SET status = ?, run_at = ?, last_error = ?, updated_at = ?"
                " WHERE id = ? AND attempts = ?",
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
                "UPDATE attempts SET finished_at = ?, outcome = ?, error = ?, traceback = ?"
                " WHERE id = (SELECT MAX(id) FROM attempts WHERE delivery_id = ? AND attempt = ?)"
                " AND (finished_at IS NULL OR outcome = 'lost')",
                (now, outcome, result.error, result.traceback, delivery_id, attempt),
            )

    def _update_folding(
        self, conn: sqlite3.Connection, delivery_id: str, update: str, params: tuple[Any, ...]
    ) -> None:
        """Run ``update`` of ``delivery_id``'s row. If no row matched, the delivery may still be
        in the ingest log (reserved, not folded yet): the log is folded up to it, and no further,
        then the update runs again. The usual case, a folded row, costs the one update; a fenced
        update that rightly matched nothing costs one look at the log."""
        if conn.execute(update, params).rowcount:
            return
        logged = conn.execute("SELECT seq FROM ingest WHERE id = ?", (delivery_id,)).fetchone()
        if logged is not None:
            self._fold(conn, through=logged[0])
            conn.execute(update, params)

    def load(self, delivery_id: str) -> Delivery | None:
        """The stored delivery, body and headers included (for replay), or None."""
        record = self.get(delivery_id)
        return record.delivery() if record is not None else None

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each status."""
        conn = self._connection()
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status"))
        waiting = conn.execute("SELECT COUNT(*) FROM ingest").fetchone()[0]
        if waiting:
            counts["queued"] = counts.get("queued", 0) + waiting
        return {str(status): int(count) for status, count in counts.items()}

    def purge(
        self,
        older_than: float = DEFAULT_RETENTION_SECONDS,
        max_rejections: int = DEFAULT_MAX_REJECTIONS,
    ) -> int:
        """Forget processed (and ignored) deliveries and rejections older than ``older_than``
        seconds, and expired dedupe keys. Queued, retrying and dead deliveries are kept until
        replayed. Works in short transactions (``PURGE_TRANSACTION_SECONDS`` each, with a pause
        between them), so a delivery arriving meanwhile is stored at its usual latency."""
        cutoff = time.time() - older_than
        gone = self._purge_in_chunks(
            "SELECT id FROM deliveries WHERE status IN ('processed', 'ignored')"
            " AND updated_at < ? LIMIT ?",
            (cutoff,),
            (
                "DELETE FROM attempts WHERE delivery_id IN ({ids})",
                "DELETE FROM deliveries WHERE id IN ({ids})",
            ),
        )
        gone += self._purge_in_chunks(
            "SELECT id FROM rejections WHERE received_at < ?"
            " OR id <= (SELECT MAX(id) FROM rejections) - ? LIMIT ?",
            (cutoff, max_rejections),
            ("DELETE FROM rejections WHERE id IN ({ids})",),
        )
        while True:  # expired dedupe keys, by primary key, a chunk per transaction
            with self._transaction() as conn:
                expired = conn.execute(
                    "DELETE FROM dedupe WHERE (endpoint, key) IN (SELECT endpoint, key FROM"
                    " dedupe WHERE expires_at < ? LIMIT 2000)",
                    (time.time(),),
                ).rowcount
            if expired < 2000:
                return gone
            time.sleep(PURGE_PAUSE_SECONDS)

    def _purge_in_chunks(
        self, select: str, params: tuple[Any, ...], deletes: tuple[str, ...]
    ) -> int:
        """Delete what ``select`` finds, a chunk per transaction: each chunk is sized to take
        about ``PURGE_TRANSACTION_SECONDS``, and the write lock is left free between chunks
        long enough for a waiting writer's busy handler to take it."""
        chunk, total = 500, 0
        while True:
            started = time.monotonic()
            with self._transaction() as conn:
                keys = [row[0] for row in conn.execute(select, (*params, chunk))]
                if keys:
                    marks = ",".join("?" * len(keys))
                    for delete in deletes:
                        conn.execute(delete.format(ids=marks), keys)
            total += len(keys)
            if len(keys) < chunk:
                return total
            took = time.monotonic() - started
            # Aim each transaction at the budget: grow fast chunks, shrink slow ones.
            chunk = max(50, min(20_000, int(chunk * PURGE_TRANSACTION_SECONDS / max(took, 1e-4))))
            time.sleep(PURGE_PAUSE_SECONDS)

    def consumer_seen(self, consumer_id: str, endpoints: Collection[str]) -> None:
        """A consumer says it is alive and which endpoints it serves (every few seconds), so
        ``replay`` can say truthfully whether anything will pick deliveries up."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO consumers (id, host, pid, endpoints, seen_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET endpoints = excluded.endpoints,"
                " seen_at = excluded.seen_at",
                (
                    consumer_id,
                    socket.gethostname(),
                    os.getpid(),
                    json.dumps(sorted(endpoints)),
                    time.time(),
                ),
            )
            conn.execute("DELETE FROM consumers WHERE seen_at < ?", (time.time() - 86400,))

    def live_consumers(self, within: float) -> dict[str, list[str]]:
        """Endpoint -> descriptions (``pid 123 on host``) of consumers seen in the last
        ``within`` seconds."""
        rows = (
            self._connection()
            .execute(
                "SELECT host, pid, endpoints FROM consumers WHERE seen_at >= ?",
                (time.time() - within,),
            )
            .fetchall()
        )
        found: dict[str, list[str]] = {}
        for host, pid, endpoints in rows:
            for endpoint in json.loads(endpoints):
                found.setdefault(endpoint, []).append(f"pid {pid} on {host}")
        return found

    def housekeeping(self) -> None:
        """What a consumer runs now and then: purge by the default retention, then checkpoint."""
        self.purge()
        self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the WAL back into the database so it does not grow without bound."""
        self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _inode(path: str) -> tuple[int, int] | None:
    """The file's identity (device, inode), None when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _filters(
    statuses: tuple[str, ...],
    since: float | None,
    endpoint: str | None,
    before: tuple[float, Any] | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if before is not None:  # the history's cursor: after the last row shown, ties by id
        clauses.append("(received_at < ? OR (received_at = ? AND id < ?))")
        params += [before[0], before[0], before[1]]
    if statuses:
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        params += statuses
    if since is not None:
        clauses.append("received_at >= ?")
        params.append(since)
    if endpoint is not None:
        clauses.append("endpoint = ?")
        params.append(endpoint)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
