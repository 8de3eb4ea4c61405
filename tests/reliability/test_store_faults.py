"""The SQLite store changing under a running process: a database file deleted or replaced is
noticed before the next 200 (that request gets 503), and the next requests go to the file now
at the path, where the worker runs them."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.contract import SECRET, contract_guard
from webhook_guard.core.guard import Guard
from webhook_guard.testing import sign_request
from webhook_guard.worker import Worker


def post(guard: Guard, n: int) -> tuple[int, str | None]:
    """Status and delivery id of one signed delivery."""
    body = json.dumps({"event": "x", "n": n}).encode()
    outcome = guard.receive("POST", "/", sign_request("cloudaipilot", SECRET, body), body)
    payload = json.loads(outcome.body)
    return outcome.status, payload.get("id")


def remove_database(path: Path) -> None:
    """Delete the database file and its WAL and shared-memory files, as an operator might."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_deleted_database_file_is_a_503_then_a_fresh_file(tmp_path: Path) -> None:
    """Deleted while running: the next request gets 503 (never a 200 into the deleted file); the
    one after it is stored in a new file and processed."""
    db = tmp_path / "q.db"
    guard = contract_guard("cloudaipilot", str(db))
    ran: list[str] = []
    guard.add_handler(lambda delivery: ran.append(delivery.id))
    assert post(guard, 1)[0] == 200
    remove_database(db)
    assert post(guard, 2)[0] == 503
    status, delivery_id = post(guard, 3)
    assert status == 200 and db.exists()
    Worker(guard).drain(timeout=10)
    assert ran == [delivery_id]


def test_a_replaced_database_file_is_noticed_before_the_next_200(tmp_path: Path) -> None:
    """Another file moved over the path (a restore from backup): 503 once, then the new file."""
    db = tmp_path / "q.db"
    guard = contract_guard("cloudaipilot", str(db))
    assert post(guard, 1)[0] == 200
    backup = tmp_path / "backup.db"
    with sqlite3.connect(db) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)
    os.replace(backup, db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    assert post(guard, 2)[0] == 503
    status, delivery_id = post(guard, 3)
    assert status == 200
    assert guard.queue.get(delivery_id) is not None  # type: ignore[attr-defined]


LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def test_every_request_is_answered_within_the_budget_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    """Eight concurrent signed requests and eight unsigned ones while another process holds the
    write lock past the 5 s budget: every signed one gets 503 + Retry-After and every unsigned
    one its 400 before the lock is released (none waits for a second busy timeout behind
    another batch, and recording a rejection never waits for the lock)."""
    import subprocess
    import sys
    import threading

    db = tmp_path / "q.db"
    guard = contract_guard("cloudaipilot", str(db))
    assert post(guard, 0)[0] == 200  # the file and its schema exist
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db), "9"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        answers: list[tuple[str, int, bool]] = []

        def signed(n: int) -> None:
            status, _ = post(guard, n)
            answers.append(("signed", status, holder.poll() is None))

        def unsigned() -> None:
            outcome = guard.receive("POST", "/", {}, b"{}")
            answers.append(("unsigned", outcome.status, holder.poll() is None))

        threads = [threading.Thread(target=signed, args=(n,)) for n in range(1, 9)]
        threads += [threading.Thread(target=unsigned) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(answers) == sorted([("signed", 503, True)] * 8 + [("unsigned", 400, True)] * 8), (
        answers
    )
    assert guard.queue.rejections_dropped >= 1  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_delivery_arriving_during_a_big_purge_gets_its_200(tmp_path: Path) -> None:
    """A purge of 300 000 old processed deliveries works in short transactions: deliveries sent
    meanwhile, on a store that waits at most 0.5 s for the lock, all get 200 while it runs."""
    import threading

    from webhook_guard.queues.sqlite import SQLiteQueue

    db = tmp_path / "q.db"
    guard = contract_guard("cloudaipilot", SQLiteQueue(db, busy_timeout_ms=500))
    assert post(guard, 0)[0] == 200  # the schema
    old = time.time() - 90 * 86400
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO deliveries (id, endpoint, scheme, received_at, headers, body,"
            " body_sha256, status, run_at, updated_at) VALUES (?, 'default', 'cloudaipilot', ?,"
            " '[]', x'7b7d', '', 'processed', ?, ?)",
            ((f"old{i:07d}", old, old, old) for i in range(300_000)),
        )
        conn.executemany(
            "INSERT INTO attempts (delivery_id, attempt, started_at, finished_at, outcome)"
            " VALUES (?, 1, ?, ?, 'processed')",
            ((f"old{i:07d}", old, old) for i in range(300_000)),
        )
    purged: list[int] = []
    purger = threading.Thread(target=lambda: purged.append(SQLiteQueue(db).purge()))
    purger.start()
    answers = []
    while purger.is_alive() and len(answers) < 20:
        answers.append((post(guard, len(answers) + 1)[0], purger.is_alive()))
        time.sleep(0.05)
    purger.join(120)
    assert answers and all(status == 200 for status, _ in answers), answers
    assert answers[0][1], "the purge was still running while deliveries were stored"
    assert purged == [300_000]


def chattr(flag: str, *paths: Path) -> bool:
    """``chattr`` the files (immutable: not writable even by root); False where it cannot."""
    import shutil
    import subprocess

    if shutil.which("chattr") is None:
        return False
    result = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True)
    return result.returncode == 0


def test_a_connection_opened_while_the_file_was_read_only_heals(tmp_path: Path) -> None:
    """A process that opened its connection while the database was read-only answers 503 then,
    and 200 again once the file is writable, without a restart (its connection is reopened)."""
    from webhook_guard.queues.sqlite import SQLiteQueue

    db = tmp_path / "q.db"
    first = contract_guard("cloudaipilot", SQLiteQueue(db), endpoint="first")
    assert post(first, 1)[0] == 200
    first.queue.checkpoint()  # type: ignore[attr-defined]
    files = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
    if not chattr("+i", *files):
        pytest.skip("needs chattr on an ext2/3/4 filesystem (root can write a chmod 444 file)")
    try:
        late = contract_guard("cloudaipilot", SQLiteQueue(db), endpoint="late")
        assert post(late, 2)[0] == 503
    finally:
        chattr("-i", *files)
    status, delivery_id = post(late, 3)
    assert status == 200 and late.queue.get(delivery_id) is not None  # type: ignore[attr-defined]
