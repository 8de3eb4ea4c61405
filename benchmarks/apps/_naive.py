"""The "naive" receiver every bench app also serves at ``POST /naive``: what a user writes from our
docs' advice without webhook_guard. HMAC-SHA256 over the raw body, compared in constant time with
``X-CloudAIPilot-Signature``; one ``INSERT`` of the body into a one-table SQLite database, in the
request, committed before answering; then 200 (401 on a bad signature).

The database (``BENCH_NAIVE_DB``) uses the same settings as webhook_guard's ``SQLiteQueue`` for
``BENCH_NAIVE_DURABILITY``: WAL, ``synchronous=NORMAL`` for "process" and ``FULL`` for "power",
a 5 s busy timeout. One connection per thread, as a user with ``sqlite3`` would keep one (gunicorn
gthread has 4 threads; an ASGI app calls it on the event loop's thread, blocking the loop, which
is what a handler that calls ``sqlite3`` from ``async def`` does). No dedupe, no history, no lease:
this is the floor the issue's "webhook >= 1.0x naive" target compares against.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time

_SECRET = os.environ.get("WEBHOOK_SECRET", "").encode()
_DB = os.environ.get("BENCH_NAIVE_DB", "")
_SYNCHRONOUS = {"process": "NORMAL", "power": "FULL"}[
    os.environ.get("BENCH_NAIVE_DURABILITY", "power")
]
_local = threading.local()


def _connection() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        if not _DB:
            raise RuntimeError("BENCH_NAIVE_DB is not set")
        conn = sqlite3.connect(_DB, isolation_level=None, timeout=5.0)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS inbox "
            "(id INTEGER PRIMARY KEY, received_at REAL NOT NULL, body BLOB NOT NULL)"
        )
        _local.conn = conn
    return conn


def naive_receive(signature: str | None, body: bytes) -> int:
    """Verify, store, answer: the HTTP status of the naive handler."""
    expected = "sha256=" + hmac.new(_SECRET, body, hashlib.sha256).hexdigest()
    if signature is None or not hmac.compare_digest(signature, expected):
        return 401
    _connection().execute("INSERT INTO inbox(received_at, body) VALUES (?, ?)", (time.time(), body))
    return 200
