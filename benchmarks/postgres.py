"""The PostgreSQL queue's request path against a naive single-row ``INSERT`` into PostgreSQL.

    .venv/bin/python benchmarks/postgres.py [--reps 5] [--n 1000] [--url postgresql://...]

In one run, interleaved, each sample in a fresh schema of the database at ``--url`` (default the
machine's ``postgresql://postgres@127.0.0.1:5432/test``), a distinct signed 1 KiB body per
request:

- naive: what a user writes from the usual advice (verify the HMAC over the raw body, then one
  ``INSERT`` of the body into a one-table inbox, committed), from 1 thread and from 16 threads
  (each with its own connection, as 16 gthread threads would hold);
- ``Guard.admit`` alone (verify + the Delivery, no store): the bare endpoint's share of the work;
- ``Guard.receive`` on ``postgresql://`` (dedupe + record in one statement), 1 thread and 16;
- ``Guard.areceive`` x 16 concurrent on one event loop (the ASGI path).

Reported: microseconds per delivery, deliveries/s, our throughput divided by the naive one at
the same concurrency (issue 13's target: >= 1.0) and by ``Guard.admit`` alone. Every ``Guard``
sample checks that each request stored a new delivery. PostgreSQL runs with its defaults
(``synchronous_commit=on``: every commit waits for its WAL flush), the same for both.
``--smoke`` runs a tiny sample of each, to prove the script works (``make bench-smoke``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from _common import BENCH_SECRET, CpuAccount, machine_line, md_table, median, rotated

from webhook_guard import Guard
from webhook_guard.testing import sign_request

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
THREADS = 16
Request = tuple[dict[str, str], bytes]


def requests(n: int) -> list[Request]:
    """``n`` distinct signed requests (a new dedupe key each: the body's sha256)."""
    run = uuid.uuid4().hex
    out = []
    for i in range(n):
        body = (b'{"event": "bench.pg", "run": "%s", "n": %d, "pad": "' % (run.encode(), i)).ljust(
            1022, b"x"
        ) + b'"}'
        out.append((sign_request("cloudaipilot", BENCH_SECRET, body), body))
    return out


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A schema of its own for one sample, dropped afterwards."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def in_threads(
    work: Callable[[int, list[Request]], None], reqs: list[Request], threads: int
) -> float:
    """Seconds for ``threads`` threads to run ``work(index, share)`` on equal shares of
    ``reqs``, timed from when all are ready."""
    per = len(reqs) // threads
    shares = [reqs[i * per : (i + 1) * per] for i in range(threads)]
    start = threading.Barrier(threads + 1)

    def run(index: int, share: list[Request]) -> None:
        start.wait()
        work(index, share)

    pool = [threading.Thread(target=run, args=pair) for pair in enumerate(shares)]
    for thread in pool:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in pool:
        thread.join()
    return time.perf_counter() - t0


# -- candidates: each returns seconds per delivery -------------------------------------------


def naive(url: str, n: int, threads: int) -> float:
    import psycopg

    key = BENCH_SECRET.encode()
    reqs = requests(n)
    with fresh_schema(url) as schema:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(
                f'CREATE TABLE "{schema}".inbox (id bigserial PRIMARY KEY, received_at'
                " double precision, delivery_id text, body bytea)"
            )
        sql = f'INSERT INTO "{schema}".inbox (received_at, delivery_id, body) VALUES (%s, %s, %s)'
        # Connected before the clock starts, as a running app's are.
        conns = [psycopg.connect(url, autocommit=True) for _ in range(threads)]

        def work(index: int, share: list[Request]) -> None:
            conn = conns[index]
            for headers, body in share:
                given = headers["X-CloudAIPilot-Signature"].removeprefix("sha256=")
                expected = hmac.new(key, body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(given, expected):
                    raise AssertionError("naive: bad signature")
                conn.execute(sql, (time.time(), headers["X-CloudAIPilot-Delivery"], body))

        try:
            elapsed = in_threads(work, reqs, threads)
        finally:
            for conn in conns:
                conn.close()
        with psycopg.connect(url) as conn:
            row = conn.execute(f'SELECT count(*) FROM "{schema}".inbox').fetchone()
        assert row is not None and row[0] == len(reqs) // threads * threads
    return elapsed / (len(reqs) // threads * threads)


def new_guard(url: str, schema: str) -> Guard:
    guard = Guard(BENCH_SECRET, queue=f"{url}?schema={schema}", worker="external")
    guard.add_handler(lambda delivery: None)
    return guard


def stored(guard: Guard) -> int:
    counts: dict[str, int] = guard.queue.counts()  # type: ignore[attr-defined]
    return sum(counts.values())


def admit(url: str, n: int, threads: int) -> float:
    with fresh_schema(url) as schema:
        guard = new_guard(url, schema)
        reqs = requests(n)
        t0 = time.perf_counter()
        for headers, body in reqs:
            guard.admit("POST", headers, body)
        elapsed = time.perf_counter() - t0
        guard.close()
    return elapsed / n


def receive(url: str, n: int, threads: int) -> float:
    with fresh_schema(url) as schema:
        guard = new_guard(url, schema)
        guard.receive("POST", "/webhook", *requests(1)[0])  # the schema exists
        reqs = requests(n)
        failures: list[int] = []

        def work(_index: int, share: list[Request]) -> None:
            for headers, body in share:
                status = guard.receive("POST", "/webhook", headers, body).status
                if status != 200:
                    failures.append(status)

        in_threads(work, requests(threads), threads)  # the pool's connections are open now
        elapsed = in_threads(work, reqs, threads)
        done = len(reqs) // threads * threads
        expected = 1 + threads + done
        assert not failures and stored(guard) == expected, (failures[:3], stored(guard))
        guard.close()
    return elapsed / done


def areceive(url: str, n: int, threads: int) -> float:
    with fresh_schema(url) as schema:
        guard = new_guard(url, schema)
        guard.receive("POST", "/webhook", *requests(1)[0])
        reqs = requests(n)
        per = n // threads

        async def client(share: list[Request]) -> None:
            for headers, body in share:
                outcome = await guard.areceive("POST", "/webhook", headers, body)
                assert outcome.status == 200, outcome

        async def run() -> float:
            t0 = time.perf_counter()
            await asyncio.gather(*(client(reqs[i * per : (i + 1) * per]) for i in range(threads)))
            return time.perf_counter() - t0

        elapsed = asyncio.run(run())
        assert stored(guard) == 1 + per * threads
        guard.close()
    return elapsed / (per * threads)


CANDIDATES: dict[str, tuple[Callable[[str, int, int], float], int]] = {
    "naive: HMAC + one INSERT, 1 thread": (naive, 1),
    f"naive: HMAC + one INSERT, {THREADS} threads": (naive, THREADS),
    "Guard.admit only (verify + Delivery, no store)": (admit, 1),
    "Guard.receive, 1 thread": (receive, 1),
    f"Guard.receive, {THREADS} threads": (receive, THREADS),
    f"Guard.areceive x {THREADS} concurrent (ASGI path)": (areceive, THREADS),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=1000, help="deliveries per sample")
    ap.add_argument("--url", default=DEFAULT_URL, help="a PostgreSQL database to work in")
    ap.add_argument("--smoke", action="store_true", help="a tiny sample of each (make test)")
    args = ap.parse_args()
    if args.smoke:
        args.reps, args.n = 1, 32
    try:
        import psycopg

        psycopg.connect(args.url, connect_timeout=2).close()
    except Exception as error:  # no psycopg, or no server: say so, as engines.py does
        print(f"postgres.py skipped: {args.url} is not usable ({error})", file=sys.stderr)
        return 0
    results: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    account = CpuAccount()
    t_start = time.perf_counter()
    for rep in range(args.reps):
        for name in rotated(list(CANDIDATES), rep):
            run, threads = CANDIDATES[name]
            results[name].append(run(args.url, args.n, threads))
    per = {name: median(xs) for name, xs in results.items()}
    naive_by_threads = {
        1: per["naive: HMAC + one INSERT, 1 thread"],
        THREADS: per[f"naive: HMAC + one INSERT, {THREADS} threads"],
    }
    bare = per["Guard.admit only (verify + Delivery, no store)"]
    print("## The PostgreSQL queue's request path (`benchmarks/postgres.py`)\n")
    print(f"- machine: {machine_line()}")
    print(
        f"- {args.reps} interleaved reps x {args.n} deliveries per sample, medians; "
        f"{time.perf_counter() - t_start:.0f} s; other processes used "
        f"{account.foreign_cores():.2f} cores meanwhile\n"
    )
    rows = []
    for name, (_, threads) in CANDIDATES.items():
        seconds = per[name]
        versus_naive = naive_by_threads[threads] / seconds if "receive" in name else None
        rows.append(
            (
                name,
                f"{seconds * 1e6:,.1f}",
                f"{1 / seconds:,.0f}",
                "-" if versus_naive is None else f"{versus_naive:.2f}",
                f"{bare / seconds:.3f}",
            )
        )
    print(
        md_table(
            (
                "path",
                "µs per delivery",
                "deliveries/s",
                "throughput ÷ naive (same threads)",
                "throughput ÷ admit only",
            ),
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
