"""In-process ack and drain costs: ``Guard.receive`` without HTTP, and the worker's drain rate.

    .venv-bench/bin/python benchmarks/enqueue_drain.py [--reps 3] [--n 2000] [--backlog 5000]

Part 1, enqueue (no HTTP, no framework): a distinct 1 KiB JSON body each time (a counter inside;
the cloudaipilot dedupe key is the body's sha256), signed with the cloudaipilot scheme, into a
fresh SQLite file per sample (each sample checks that every request stored a new delivery), in both
durabilities ("power" = ``synchronous=FULL``, "process" = ``NORMAL``):

- ``Guard.admit`` alone (verify + build the Delivery, no store): the CPU part of the ack;
- ``Guard.receive`` called by 1 thread (what a gunicorn sync worker does);
- ``Guard.receive`` from 16 threads at once (a gthread worker with many threads);
- ``Guard.areceive`` x 16 concurrent on one asyncio loop (the ASGI middleware's path);
- reference: one plain ``INSERT`` of the same body per transaction into a one-table WAL database
  (the research baseline's "SQLite WAL 1 txn/insert"), same durability;
- floor: the two writes a durable, deduplicated ack needs (the dedupe key and the ingest-log
  row, one transaction) through plain ``sqlite3`` on the queue's own file, parameters built
  before timing: what is left for a sync worker once the library's Python is gone.

Rows per commit (how well group commit works) come from counting ``SQLiteQueue._commit`` calls
(a private method wrapped for diagnostics). Repetitions are interleaved; medians are shown.
With ``--pin`` (default when there are >= 2 CPUs) the process runs on CPU 1 only, as the servers
of ``ack_path.py`` do, so threads share one core.

Diagnostics: where the CPU of ``Guard.admit`` goes; WAL pages written per delivery vs a plain
INSERT; the store's two statements (the dedupe key, the ingest row) timed alone and together,
1 and 16 rows per transaction, on a file already holding 20 000 deliveries; and the latency
distribution of sequential ``Guard.receive`` with SQLite's WAL auto-checkpoint on (a
checkpoint runs inside whichever request crosses the interval) vs off on the library's
connection (private; shows what those checkpoints cost).

Part 2, drain: a backlog of ``--backlog`` (5 000) deliveries with a no-op handler, then
``Worker(guard).drain()`` timed; also a 1 000 backlog, to show how the rate scales with the
backlog, and the time of one claim query (``_NEXT_DUE``, private) at the full backlog.

Part 3, maintenance (``--purge-rows``, 300 000): a file holding that many processed deliveries of
1 KiB from 90 days ago (with their attempts and expired dedupe keys) is purged by a second queue
object while one thread keeps calling ``Guard.receive``; its latencies (every answer must be a
200) are set against the same sender on the same file with no purge. The longest write-lock
hold of the purge, and of the claims that fold an ingest log of 5 000, come from timing the
queue's private ``_transaction`` (the issue's bound: 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from _common import (
    BENCH_EVENT,
    BENCH_SECRET,
    CpuAccount,
    ack_body,
    fs_type,
    machine_line,
    md_table,
    median,
    rotated,
    signed_ack_request,
)

from webhook_guard import Guard, SQLiteQueue
from webhook_guard.queues import sqlite as sqlite_queue
from webhook_guard.worker import Worker

SECRET = BENCH_SECRET
EVENT = BENCH_EVENT
DURABILITIES = ("process", "power")


BODY = ack_body()
SIG = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


Request = tuple[list[tuple[str, str]], bytes]


def request() -> Request:
    """A new signed request (headers as an adapter passes them, a distinct body): a new
    delivery, since the dedupe key is the body's sha256."""
    return signed_ack_request()


def new_guard(path: str, durability: str) -> Guard:
    queue = SQLiteQueue(path, durability="power" if durability == "power" else "process")
    guard = Guard(SECRET, queue=queue, worker="external")
    guard.add_handler(lambda delivery: None)
    return guard


class CommitCounter:
    """Counts group commits by wrapping the queue's private ``_commit`` (diagnostics)."""

    def __init__(self, queue: Any) -> None:
        self.commits = 0
        self.rows = 0
        original = queue._commit

        def counted(batch: list[Any]) -> None:
            self.commits += 1
            self.rows += len(batch)
            original(batch)

        queue._commit = counted

    @property
    def rows_per_commit(self) -> float:
        return self.rows / self.commits if self.commits else 0.0


# ----------------------------------------------------------------------- part 1: enqueue


def assert_all_new(guard: Guard, expected: int) -> None:
    """Every request of a sample was a new delivery (a duplicate would store no row)."""
    assert isinstance(guard.queue, SQLiteQueue)
    stored = sum(guard.queue.counts().values())
    assert stored == expected, f"{stored} deliveries stored for {expected} requests"


def run_admit(path: str, durability: str, n: int) -> tuple[float, float]:
    guard = new_guard(path, durability)
    reqs = [request() for _ in range(n)]
    t0 = time.perf_counter()
    for h, body in reqs:
        guard.admit("POST", h, body)
    return (time.perf_counter() - t0) / n, 0.0


def run_sequential(path: str, durability: str, n: int) -> tuple[float, float]:
    guard = new_guard(path, durability)
    counter = CommitCounter(guard.queue)
    guard.receive("POST", "/webhook", *request())  # creates the schema
    reqs = [request() for _ in range(n)]
    t0 = time.perf_counter()
    for h, body in reqs:
        outcome = guard.receive("POST", "/webhook", h, body)
    elapsed = time.perf_counter() - t0
    assert outcome.status == 200 and b'"ok"' in outcome.body, outcome
    assert_all_new(guard, 1 + n)
    return elapsed / n, counter.rows_per_commit


def run_threads(path: str, durability: str, n: int, threads: int = 16) -> tuple[float, float]:
    guard = new_guard(path, durability)
    guard.receive("POST", "/webhook", *request())
    counter = CommitCounter(guard.queue)
    per = n // threads
    batches = [[request() for _ in range(per)] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    failures: list[object] = []

    def work(reqs: list[Request]) -> None:
        start.wait()
        for h, body in reqs:
            outcome = guard.receive("POST", "/webhook", h, body)
            if outcome.status != 200:
                failures.append(outcome)

    ts = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    assert not failures, failures[:3]
    assert_all_new(guard, 1 + per * threads)
    return elapsed / (per * threads), counter.rows_per_commit


def run_async(path: str, durability: str, n: int, conc: int = 16) -> tuple[float, float]:
    guard = new_guard(path, durability)
    guard.receive("POST", "/webhook", *request())
    counter = CommitCounter(guard.queue)
    per = n // conc

    async def client(reqs: list[Request]) -> None:
        for h, body in reqs:
            outcome = await guard.areceive("POST", "/webhook", h, body)
            assert outcome.status == 200, outcome

    async def main() -> float:
        hs = [[request() for _ in range(per)] for _ in range(conc)]
        t0 = time.perf_counter()
        await asyncio.gather(*(client(h) for h in hs))
        return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    assert_all_new(guard, 1 + per * conc)
    return elapsed / (per * conc), counter.rows_per_commit


def run_plain(path: str, durability: str, n: int) -> tuple[float, float]:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=" + ("FULL" if durability == "power" else "NORMAL"))
    con.execute(
        "CREATE TABLE inbox(id INTEGER PRIMARY KEY, received_at REAL, provider TEXT,"
        " delivery_id TEXT, signature TEXT, status INTEGER, body BLOB)"
    )
    sql = (
        "INSERT INTO inbox(received_at, provider, delivery_id, signature, status, body)"
        " VALUES (?, ?, ?, ?, 0, ?)"
    )
    t0 = time.perf_counter()
    for i in range(n):
        con.execute(sql, (time.time(), "cloudaipilot", f"d-{i}", SIG, BODY))
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed / n, 1.0


def run_store_floor(path: str, durability: str, n: int) -> tuple[float, float]:
    """The SQL a durable, deduplicated ack cannot do without, and nothing else: the dedupe key
    and the ingest-log row in one ``BEGIN IMMEDIATE`` transaction, on the queue's own file and
    settings, through plain ``sqlite3``. Every statement's parameters are built before the clock
    starts (from admitted deliveries), so the gap between ``Guard.receive`` and this row is the
    library's Python, and the gap between this row and the plain INSERT is the second B-tree
    and the larger row (diagnostics; private statements of ``webhook_guard.queues.sqlite``)."""
    guard = new_guard(path, durability)
    guard.receive("POST", "/webhook", *request())  # creates the schema, as the others do
    assert isinstance(guard.queue, SQLiteQueue)
    con = guard.queue._connection()  # its PRAGMAs: synchronous, checkpoint interval
    params = store_params(guard, n)
    t0 = time.perf_counter()
    for row in params:
        write_statements(con, [row], ("claim", "append"))
    elapsed = time.perf_counter() - t0
    assert_all_new(guard, 1 + n)
    guard.close()
    return elapsed / n, 1.0


CANDIDATES: dict[str, Callable[[str, str, int], tuple[float, float]]] = {
    "reference: plain INSERT, 1 txn per row (one-table WAL db)": run_plain,
    "floor: the dedupe key + the ingest row, 1 txn, raw sqlite3": run_store_floor,
    "Guard.admit only (verify + Delivery, no store)": run_admit,
    "Guard.receive, 1 thread (sync worker)": run_sequential,
    "Guard.receive, 16 threads (gthread-like)": run_threads,
    "Guard.areceive x 16 concurrent, asyncio (ASGI path)": run_async,
}


def part_enqueue(work: str, reps: int, n: int) -> None:
    combos = [(d, c) for d in DURABILITIES for c in CANDIDATES]
    res: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in combos}
    account = CpuAccount()
    t_start = time.perf_counter()
    for rep in range(reps):
        for combo in rotated(combos, rep):
            durability, name = combo
            folder = tempfile.mkdtemp(dir=work)
            try:
                res[(durability, name)].append(
                    CANDIDATES[name](os.path.join(folder, "q.db"), durability, n)
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\n### Enqueue in-process ({reps} reps x {n} deliveries per sample; "
        f"{time.perf_counter() - t_start:.0f} s; other processes used "
        f"{account.foreign_cores():.2f} cores meanwhile)\n"
    )
    rows = []
    for durability in DURABILITIES:
        ref = median(x[0] for x in res[(durability, next(iter(CANDIDATES)))])
        for name in CANDIDATES:
            xs = res[(durability, name)]
            per = median(x[0] for x in xs)
            rpc = median(x[1] for x in xs)
            rows.append(
                (
                    durability,
                    name,
                    f"{per * 1e6:,.1f}",
                    f"{1 / per:,.0f}",
                    f"{per / ref:.2f}",
                    "-" if name.startswith(("Guard.admit", "reference", "floor")) else f"{rpc:.2f}",
                )
            )
    print(
        md_table(
            (
                "durability",
                "path",
                "us per delivery",
                "deliveries/s",
                "x plain INSERT",
                "rows per commit",
            ),
            rows,
            right=2,
        )
    )


def wal_pages_per_delivery(work: str, durability: str, n: int = 500) -> tuple[float, float]:
    """WAL frames (4 KiB pages) one sequential ``Guard.receive`` appends, and the same for the
    plain one-table INSERT; auto-checkpoints off on the library's connection (diagnostics)."""
    folder = tempfile.mkdtemp(dir=work)
    try:
        guard = new_guard(os.path.join(folder, "q.db"), durability)
        guard.receive("POST", "/webhook", *request())
        assert isinstance(guard.queue, SQLiteQueue)
        conn = guard.queue._connection()
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for _ in range(n):
            guard.receive("POST", "/webhook", *request())
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        frames = (os.path.getsize(os.path.join(folder, "q.db-wal")) - 32) / (page + 24)
        plain = os.path.join(folder, "plain.db")
        con = sqlite3.connect(plain, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("CREATE TABLE inbox(id INTEGER PRIMARY KEY, signature TEXT, body BLOB)")
        for i in range(n):
            con.execute("INSERT INTO inbox(signature, body) VALUES (?, ?)", (f"d-{i}", BODY))
        plain_frames = (os.path.getsize(plain + "-wal") - 32) / (page + 24)
        con.close()
        return frames / n, plain_frames / n
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def admit_breakdown() -> list[tuple[str, str]]:
    """Where the CPU of one ack goes before the store (diagnostics, median of 5 x 2000 calls)."""
    from webhook_guard.core import outcome
    from webhook_guard.core.headers import Headers

    guard = new_guard(os.path.join(tempfile.gettempdir(), "wg-unused.db"), "process")
    raw, body = request()
    parsed = Headers(raw)
    delivery = guard.admit("POST", raw, body)
    keys = guard._keys
    steps: dict[str, Callable[[], object]] = {
        "Headers(8 header pairs)": lambda: Headers(raw),
        "Headers.safe_items() (drops credential headers)": parsed.safe_items,
        "scheme.verify (parsed headers)": lambda: guard.scheme.verify(parsed, body, keys, 0.0),
        "json.dumps(delivery.headers) (as the store does)": lambda: json.dumps(
            list(delivery.headers)
        ),
        "delivery.body_sha256 (the store computes it)": lambda: delivery.body_sha256,
        "outcome.accepted(id) (the 200 body)": lambda: outcome.accepted(delivery.id),
        "Guard.admit (Headers + verify + safe_items + Delivery, before the store)": lambda: (
            guard.admit("POST", raw, body)
        ),
    }
    found = []
    for name, fn in steps.items():
        samples = []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for _ in range(2000):
                fn()
            samples.append((time.perf_counter_ns() - t0) / 2000 / 1000)
        found.append((name, f"{median(samples):.2f}"))
    return found


def receive_tail(work: str, durability: str, autocheckpoint: bool, n: int) -> tuple[str, ...]:
    """Latency distribution of sequential ``Guard.receive``; optionally with the library's
    connection set to ``wal_autocheckpoint=0`` (private, diagnostics: shows what the WAL
    checkpoints that run inside a request cost)."""
    folder = tempfile.mkdtemp(dir=work)
    try:
        guard = new_guard(os.path.join(folder, "q.db"), durability)
        guard.receive("POST", "/webhook", *request())
        if not autocheckpoint:
            assert isinstance(guard.queue, SQLiteQueue)
            guard.queue._connection().execute("PRAGMA wal_autocheckpoint=0")
        lat = []
        for _ in range(n):
            h, body = request()
            t0 = time.perf_counter_ns()
            guard.receive("POST", "/webhook", h, body)
            lat.append((time.perf_counter_ns() - t0) / 1e6)
        lat.sort()
        return (
            durability,
            "on (default)" if autocheckpoint else "off (diagnostic)",
            f"{sum(lat) / n * 1000:,.0f}",
            f"{lat[n // 2]:.3f}",
            f"{lat[int(n * 0.99)]:.3f}",
            f"{lat[int(n * 0.999)]:.2f}",
            f"{lat[-1]:.2f}",
            f"{sum(1 for x in lat if x > 2.0)} of {n}",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# What each of the store's two statements costs, alone and together, with 1 and 16 rows per
# transaction (a sync worker's commit and a full ASGI group commit), on a file that already
# holds this many deliveries: a random dedupe key lands on a different 4 KiB page each time, so
# its cost depends on how big the table has grown, not on how many rows share a commit.
STATEMENT_PREFILL = 20_000
STATEMENT_ROWS = 4_000


StatementParams = tuple[tuple[Any, ...], tuple[Any, ...]]


def store_params(guard: Guard, count: int) -> list[StatementParams]:
    """The parameters of the store's two statements (the dedupe key, the ingest-log row) for
    ``count`` new admitted deliveries, built as ``SQLiteQueue`` builds them (its private
    ``_ingest_row``: diagnostics)."""
    now = time.time()
    made = []
    for h, body in [request() for _ in range(count)]:
        d = guard.admit("POST", h, body)
        claim = (d.endpoint, d.dedupe_key, d.id, now + 86400, now)
        made.append((claim, sqlite_queue._ingest_row(d, now, "sqlite")))
    return made


def write_statements(
    con: sqlite3.Connection, batch: list[StatementParams], which: tuple[str, ...]
) -> None:
    """One ``BEGIN IMMEDIATE`` transaction of ``which`` statements ("claim", "append") per row
    of ``batch`` (the queue's private statements; diagnostics)."""
    con.execute("BEGIN IMMEDIATE")
    for claim, append in batch:
        if "claim" in which:
            con.execute(sqlite_queue._CLAIM_KEY, claim)
        if "append" in which:
            con.execute(sqlite_queue._APPEND_INGEST, append)
    con.execute("COMMIT")


def statement_costs(work: str, durability: str, rows_per_txn: int, smoke: bool) -> tuple[str, ...]:
    """µs per row of the dedupe key alone, the ingest row alone and both, through plain
    ``sqlite3`` on the queue's own file and settings (diagnostics)."""
    prefill, n = (200, 64) if smoke else (STATEMENT_PREFILL, STATEMENT_ROWS)
    found = []
    for which in (("claim",), ("append",), ("claim", "append")):
        folder = tempfile.mkdtemp(dir=work)
        try:
            guard = new_guard(os.path.join(folder, "q.db"), durability)
            assert isinstance(guard.queue, SQLiteQueue)
            con = guard.queue._connection()  # its PRAGMAs: synchronous, checkpoint interval
            filler = store_params(guard, prefill)
            for start in range(0, prefill, 500):  # the file as a busy day leaves it
                write_statements(con, filler[start : start + 500], ("claim", "append"))
            timed = store_params(guard, n)
            t0 = time.perf_counter()
            for start in range(0, n, rows_per_txn):
                write_statements(con, timed[start : start + rows_per_txn], which)
            found.append(f"{(time.perf_counter() - t0) / n * 1e6:.1f}")
            guard.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return (durability, str(rows_per_txn), *found)


def part_costs(work: str, smoke: bool = False) -> None:
    print("\n### Where the ack's own cost goes (diagnostics)\n")
    print(
        md_table(
            ("step (1 KiB, cloudaipilot, 8 request headers)", "us per call"), admit_breakdown()
        )
    )
    rows = []
    for durability in DURABILITIES:
        ours, plain = wal_pages_per_delivery(work, durability, 50 if smoke else 500)
        rows.append((durability, f"{ours:.2f}", f"{plain:.2f}", f"{ours / plain:.1f}"))
    print()
    print(
        md_table(
            (
                "durability",
                "WAL pages per Guard.receive",
                "WAL pages per plain INSERT",
                "ratio",
            ),
            rows,
            right=1,
        )
    )
    statements = [
        statement_costs(work, durability, rows_per_txn, smoke)
        for durability in DURABILITIES
        for rows_per_txn in (1, 16)
    ]
    print(
        "\nThe store's SQL by statement, through plain `sqlite3` on the queue's file, after "
        f"{200 if smoke else STATEMENT_PREFILL:,} deliveries (us per row):\n"
    )
    print(
        md_table(
            (
                "durability",
                "rows per transaction",
                "dedupe key alone",
                "ingest row alone",
                "both (the request path's SQL)",
            ),
            statements,
            right=2,
        )
    )
    sizes = {"process": 4000, "power": 1500}
    tails = [
        receive_tail(work, durability, auto, 100 if smoke else sizes[durability])
        for durability in DURABILITIES
        for auto in (True, False)
    ]
    print("\nSequential `Guard.receive` latency, WAL auto-checkpoint on (the default) vs off:\n")
    print(
        md_table(
            (
                "durability",
                "auto-checkpoint",
                "mean us",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "calls > 2 ms",
            ),
            tails,
            right=2,
        )
    )


# ----------------------------------------------------------------------- part 2: drain


def claim_query_us(queue: SQLiteQueue) -> float:
    from webhook_guard.queues import sqlite as sqlite_queue

    sql = getattr(sqlite_queue, "_NEXT_DUE", None)
    if sql is None:
        return float("nan")
    conn = queue._connection()
    conn.execute(sql, {"now": time.time()}).fetchone()
    t0 = time.perf_counter()
    for _ in range(20):
        conn.execute(sql, {"now": time.time()}).fetchone()
    return (time.perf_counter() - t0) / 20 * 1e6


def part_drain(work: str, backlogs: list[int], timeout: float) -> None:
    rows = []
    account = CpuAccount()
    t_start = time.perf_counter()
    for backlog in backlogs:
        for durability in DURABILITIES:
            folder = tempfile.mkdtemp(dir=work)
            try:
                guard = new_guard(os.path.join(folder, "q.db"), durability)
                t0 = time.perf_counter()
                for _ in range(backlog):
                    guard.receive("POST", "/webhook", *request())
                enqueue_s = time.perf_counter() - t0
                assert isinstance(guard.queue, SQLiteQueue)
                claim_us = claim_query_us(guard.queue)
                t0 = time.perf_counter()
                done = Worker(guard).drain(timeout=timeout)
                drain_s = time.perf_counter() - t0
                left = guard.queue.counts().get("queued", 0)
                rows.append(
                    (
                        f"{backlog:,}",
                        durability,
                        f"{done:,}" + (f" ({left:,} left at timeout)" if left else ""),
                        f"{drain_s:.2f}",
                        f"{done / drain_s:,.0f}",
                        f"{drain_s / max(done, 1) * 1e6:,.0f}",
                        f"{claim_us:,.0f}",
                        f"{backlog / enqueue_s:,.0f}",
                    )
                )
                print(f"<!-- drain {backlog} {durability}: {rows[-1]} -->", flush=True)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\n### Worker drain, no-op handler ({time.perf_counter() - t_start:.0f} s; other "
        f"processes used {account.foreign_cores():.2f} cores meanwhile)\n"
    )
    print(
        md_table(
            (
                "backlog",
                "durability",
                "drained",
                "seconds",
                "deliveries/s",
                "us per delivery",
                "one claim query at full backlog (us)",
                "enqueue rate while filling (1 thread, /s)",
            ),
            rows,
            right=2,
        )
    )


# ----------------------------------------------------------------- part 3: maintenance


class LockHolds:
    """The write-lock hold time of every transaction a queue object opens: from ``BEGIN
    IMMEDIATE`` granted to ``COMMIT`` done, by wrapping its private ``_transaction``
    (diagnostics: the issue's bound is on how long maintenance holds the lock at a time)."""

    def __init__(self, queue: SQLiteQueue) -> None:
        self.seconds: list[float] = []
        original = queue._transaction

        @contextlib.contextmanager
        def timed(conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
            with original(conn) as granted:
                t0 = time.perf_counter()
                yield granted
            self.seconds.append(time.perf_counter() - t0)

        queue._transaction = timed  # type: ignore[method-assign]


def fill_old_processed(path: str, n: int) -> None:
    """``n`` processed deliveries of 1 KiB received 90 days ago, each with its attempt and its
    expired dedupe key: what ``purge`` forgets (written in bulk, outside any clock)."""
    old = time.time() - 90 * 86400
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO deliveries (id, endpoint, scheme, dedupe_key, received_at, headers,"
            " body, body_sha256, status, run_at, updated_at) VALUES (?, 'default',"
            " 'cloudaipilot', ?, ?, '[]', ?, '', 'processed', ?, ?)",
            ((f"old{i:08d}", f"key{i:08d}", old, BODY, old, old) for i in range(n)),
        )
        conn.executemany(
            "INSERT INTO attempts (delivery_id, attempt, started_at, finished_at, outcome)"
            " VALUES (?, 1, ?, ?, 'processed')",
            ((f"old{i:08d}", old, old) for i in range(n)),
        )
        conn.executemany(
            "INSERT INTO dedupe (endpoint, key, delivery_id, expires_at)"
            " VALUES ('default', ?, ?, ?)",
            ((f"key{i:08d}", f"old{i:08d}", old + 7 * 86400) for i in range(n)),
        )


def receive_during(guard: Guard, busy: threading.Thread | None, n: int) -> list[float]:
    """Latencies (ms) of up to ``n`` sequential ``Guard.receive`` calls (one sender, as a
    gunicorn sync worker), while ``busy`` runs (all ``n`` when None); every answer must be 200."""
    lat: list[float] = []
    if busy is not None:
        busy.start()
    while len(lat) < n and (busy is None or busy.is_alive()):
        h, body = request()
        t0 = time.perf_counter_ns()
        status = guard.receive("POST", "/webhook", h, body).status
        lat.append((time.perf_counter_ns() - t0) / 1e6)
        assert status == 200, f"a delivery got {status} during maintenance"
    if busy is not None:
        busy.join()
    return sorted(lat)


def part_maintenance(work: str, rows: int) -> None:
    """``purge`` of ``rows`` old processed deliveries while one sender keeps delivering, against
    the same sender on the same file with no purge; and the longest write-lock hold of the purge
    and of a claim that folds a large ingest log (the issue's bound: 50 ms)."""
    found: list[tuple[str, ...]] = []
    holds: list[tuple[str, ...]] = []
    for durability in DURABILITIES:
        folder = tempfile.mkdtemp(dir=work)
        try:
            path = os.path.join(folder, "q.db")
            guard = new_guard(path, durability)
            guard.receive("POST", "/webhook", *request())  # the schema
            fill_old_processed(path, rows)
            quiet = receive_during(guard, None, 2000)
            purger = SQLiteQueue(path, durability=guard.queue.durability)  # type: ignore[attr-defined]
            purge_holds = LockHolds(purger)
            purged: list[int] = []
            t0 = time.perf_counter()
            job = threading.Thread(target=lambda q=purger, out=purged: out.append(q.purge()))
            during = receive_during(guard, job, 10**9)
            purge_s = time.perf_counter() - t0
            assert purged and purged[0] == rows, f"purged {purged}, expected {rows}"
            for name, lat in (("no purge", quiet), (f"purge of {rows:,} running", during)):
                found.append(
                    (
                        durability,
                        name,
                        f"{len(lat):,}",
                        f"{lat[len(lat) // 2]:.3f}",
                        f"{lat[int(len(lat) * 0.99)]:.3f}",
                        f"{lat[-1]:.2f}",
                    )
                )
            found.append(
                (
                    durability,
                    "during ÷ no purge",
                    "",
                    f"{during[len(during) // 2] / quiet[len(quiet) // 2]:.2f}",
                    f"{during[int(len(during) * 0.99)] / quiet[int(len(quiet) * 0.99)]:.2f}",
                    f"{during[-1] / quiet[-1]:.2f}",
                )
            )
            holds.append(
                (
                    durability,
                    f"purge of {rows:,} (deliveries, attempts, dedupe keys)",
                    f"{len(purge_holds.seconds):,}",
                    f"{purge_s:.1f}",
                    f"{median(purge_holds.seconds) * 1000:.1f}",
                    f"{max(purge_holds.seconds) * 1000:.1f}",
                )
            )
            holds.append(fold_holds(work, durability, min(rows, 5000)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        "\n### Maintenance: a delivery's latency during `purge`, and the longest write-lock hold\n"
    )
    print(
        md_table(
            (
                "durability",
                "sender (every answer 200, checked)",
                "deliveries",
                "p50 ms",
                "p99 ms",
                "max ms",
            ),
            found,
            right=2,
        )
    )
    print()
    print(
        md_table(
            (
                "durability",
                "operation",
                "transactions",
                "seconds in all",
                "median hold ms",
                "longest hold ms (bound: 50)",
            ),
            holds,
            right=2,
        )
    )


def fold_holds(work: str, durability: str, backlog: int) -> tuple[str, ...]:
    """Drain an ingest log of ``backlog`` deliveries: the longest claim transaction (the ones
    that fold ``FOLD_ROWS`` of the log into the history are the long ones)."""
    folder = tempfile.mkdtemp(dir=work)
    try:
        guard = new_guard(os.path.join(folder, "q.db"), durability)
        for _ in range(backlog):
            guard.receive("POST", "/webhook", *request())
        assert isinstance(guard.queue, SQLiteQueue)
        watched = LockHolds(guard.queue)
        t0 = time.perf_counter()
        Worker(guard).drain(timeout=120)
        took = time.perf_counter() - t0
        return (
            durability,
            f"drain of a {backlog:,} ingest log (claims fold it 500 at a time)",
            f"{len(watched.seconds):,}",
            f"{took:.1f}",
            f"{median(watched.seconds) * 1000:.2f}",
            f"{max(watched.seconds) * 1000:.1f}",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=2000, help="deliveries per enqueue sample")
    ap.add_argument("--backlog", type=int, default=5000)
    ap.add_argument("--small-backlog", type=int, default=1000)
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    ap.add_argument("--pin", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--skip-enqueue", action="store_true")
    ap.add_argument("--skip-drain", action="store_true")
    ap.add_argument(
        "--purge-rows",
        type=int,
        default=300_000,
        help="old processed deliveries purged while a sender delivers (0: skip that part)",
    )
    ap.add_argument(
        "--smoke", action="store_true", help="a few seconds: tiny samples (make bench-smoke)"
    )
    args = ap.parse_args()
    if args.smoke:
        args.reps, args.n, args.backlog, args.small_backlog = 1, 64, 100, 0
        args.purge_rows = 3000
    pin = args.pin == "on" or (args.pin == "auto" and (os.cpu_count() or 1) >= 2)
    if pin:
        os.sched_setaffinity(0, {1})
    # Same filesystem as the work tree's default DB; /tmp is checked to be a real disk.
    work = tempfile.mkdtemp(prefix="wg-enqueue-")
    print("## In-process enqueue and drain (`benchmarks/enqueue_drain.py`)\n")
    print(f"- machine: {machine_line()}")
    print(
        f"- {'pinned to CPU 1' if pin else 'unpinned'}; SQLite files under {work} ({fs_type(work)})"
    )
    try:
        if not args.skip_enqueue:
            part_enqueue(work, args.reps, args.n)
        part_costs(work, args.smoke)
        if not args.skip_drain:
            backlogs = sorted({args.small_backlog, args.backlog} - {0})
            part_drain(work, backlogs, args.drain_timeout)
        if args.purge_rows:
            part_maintenance(work, args.purge_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
