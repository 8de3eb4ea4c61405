"""The SQLite store under fault while a real server (the Flask sample under gunicorn gthread,
2 workers x 4 threads, embedded consumer) takes deliveries: another process holding the write
lock, the database file deleted, the file read-only when the server starts. Every request is
answered within the budget, and every delivery acknowledged with a 200 is processed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.contract import HTTPTransport
from tests.reliability.test_store_faults import LOCK_HOLDER, chattr
from tests.servers import (
    BIN,
    ROOT,
    free_port,
    gunicorn_command,
    processed,
    sample_env,
    serve,
    wait_until,
    worker_command,
)
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.e2e
SECRET = "contract-secret"


def gthread(port: int) -> list[str]:
    return gunicorn_command(
        "sample_apps.flask_app:app", port, workers=2, worker_class="gthread", threads=4
    )


def post(port: int, n: int, answers: list[tuple[int, str | None]] | None = None) -> int:
    """One signed delivery; its status (and id, when accepted) go to ``answers``."""
    body = json.dumps({"event": "x", "n": n}).encode()
    reply = HTTPTransport("127.0.0.1", port, timeout=10).request(  # the sender's timeout
        "POST", "/webhook", sign_request("cloudaipilot", SECRET, body), body
    )
    if answers is not None:
        answers.append((reply.status, reply.json().get("id")))
    return reply.status


def test_a_write_lock_held_elsewhere_is_answered_within_the_senders_timeout(
    tmp_path: Path,
) -> None:
    """Another process holds the write lock for 7 s while eight deliveries arrive at once: each
    gets its answer within the sender's 10 s timeout (the client gives up after that), 503 while
    the lock is held; a request gunicorn queued behind busy threads starts its 5 s budget late
    and may be answered 200 once the lock is gone. Every 200 is processed."""
    port = free_port()
    env = sample_env(tmp_path)
    db = Path(env["WEBHOOK_GUARD_DB"])
    with serve(gthread(port), env, port, tmp_path / "server.log"):
        assert post(port, 0) == 200  # the file and its schema exist
        holder = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(db), "7"], stdout=subprocess.PIPE, text=True
        )
        answers: list[tuple[int, str | None]] = []
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            threads = [threading.Thread(target=post, args=(port, n, answers)) for n in range(1, 9)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        finally:
            holder.kill()
            holder.wait()
        statuses = [status for status, _ in answers]
        assert len(statuses) == 8, "a request got no answer within the sender's 10 s"
        assert set(statuses) <= {200, 503} and 503 in statuses, statuses
        assert [post(port, 100 + n, answers) for n in range(3)] == [200] * 3
        ids = {id_ for status, id_ in answers if status == 200}
        assert wait_until(lambda: ids <= {p["id"] for p in processed(tmp_path)}, limit=30)


def test_a_deleted_database_file_is_never_acknowledged_into(tmp_path: Path) -> None:
    """The database deleted under the running server: no request is acknowledged into the
    deleted file; every delivery answered 200 afterwards is processed from the new file."""
    port = free_port()
    env = sample_env(tmp_path)
    db = Path(env["WEBHOOK_GUARD_DB"])
    with serve(gthread(port), env, port, tmp_path / "server.log"):
        for n in range(8):  # every worker process and thread has its connection open
            assert post(port, n) == 200
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        answers: list[tuple[int, str | None]] = []
        for n in range(20):
            post(port, 100 + n, answers)
        accepted = {id_ for status, id_ in answers if status == 200}
        assert {status for status, _ in answers} <= {200, 503} and accepted
        assert wait_until(lambda: accepted <= {p["id"] for p in processed(tmp_path)}, limit=30)


def test_processes_that_opened_a_read_only_database_heal_without_a_restart(
    tmp_path: Path,
) -> None:
    """The server starts while its database file is read-only (immutable: root writes through
    ``chmod``), so every worker process and thread opens its connection during the fault: each
    delivery gets 503, none 200. The file made writable again: deliveries get 200 and are
    processed, with no restart (the connections are reopened)."""
    port = free_port()
    env = sample_env(tmp_path)
    db = Path(env["WEBHOOK_GUARD_DB"])
    with serve(gthread(port), env, port, tmp_path / "first.log"):
        assert post(port, 0) == 200  # the file and its schema exist
        assert wait_until(lambda: len(processed(tmp_path)) == 1, limit=30)
    files = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
    if not chattr("+i", *files):
        pytest.skip("needs chattr on an ext2/3/4 filesystem (root can write a chmod 444 file)")
    try:
        with serve(gthread(port), env, port, tmp_path / "server.log"):
            during = [post(port, 1 + n) for n in range(8)]
            chattr("-i", *files)
            answers: list[tuple[int, str | None]] = []
            for n in range(8):
                post(port, 100 + n, answers)
            accepted = {id_ for status, id_ in answers if status == 200}
            assert wait_until(lambda: accepted <= {p["id"] for p in processed(tmp_path)}, limit=30)
    finally:
        chattr("-i", *files)
    assert during == [503] * 8
    assert [status for status, _ in answers] == [200] * 8


def test_a_heartbeat_that_fails_on_a_held_lock_is_retried_and_the_delivery_runs_once(
    tmp_path: Path,
) -> None:
    """Two external workers (the Flask sample's Guard, a 15 s lease, a heartbeat every 5 s); one
    runs a 20 s handler while another process holds the write lock for 10 s, longer than the
    5 s a heartbeat waits for it: that heartbeat fails, is retried, and extends the lease before
    it expires, so the other worker never starts the delivery again: it runs once."""
    port = free_port()
    env = sample_env(tmp_path, WEBHOOK_GUARD_WORKER="external", WEBHOOK_GUARD_LEASE_SECONDS="15")
    db = Path(env["WEBHOOK_GUARD_DB"])
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers: list[subprocess.Popen[bytes]] = []
    with serve(gunicorn_command("sample_apps.flask_app:app", port), env, port, tmp_path / "s.log"):
        try:
            for log in logs:
                with open(log, "ab") as out:
                    workers.append(
                        subprocess.Popen(
                            worker_command("sample_apps.flask_app:guard"),
                            cwd=ROOT,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            body = json.dumps({"event": "slow", "slow": 20}).encode()
            reply = HTTPTransport("127.0.0.1", port, timeout=10).request(
                "POST", "/webhook", sign_request("cloudaipilot", SECRET, body), body
            )
            assert reply.status == 200
            assert wait_until(lambda: '"processing"' in _status(env, reply.json()["id"]), limit=30)
            holder = subprocess.Popen(
                [sys.executable, "-c", LOCK_HOLDER, str(db), "10"],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            holder.wait(30)
            assert wait_until(lambda: len(processed(tmp_path)) == 1, limit=40)
            time.sleep(2)  # a second run (attempt 2 is not slow) would show up by now
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(30)
    output = "".join(log.read_text() for log in logs)
    assert "failed, retrying" in output  # a heartbeat did fail on the held lock
    assert "gave up" not in output
    assert [run["id"] for run in processed(tmp_path)] == [reply.json()["id"]]


def _status(env: dict[str, str], delivery_id: str) -> str:
    shown = subprocess.run(
        [str(BIN / "webhook-guard"), "show", delivery_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    return shown.stdout if shown.returncode == 0 else ""
