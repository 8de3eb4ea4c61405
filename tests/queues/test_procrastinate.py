"""procrastinate only: its worker CLI in a fresh process, and its URL. What every engine does,
procrastinate included, is in ``test_engine_suite.py``; the harnesses are in ``engines.py``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.queues.engines import STALL_APP, check_worker_cli, running
from tests.servers import BIN, ROOT, spawn
from webhook_guard.exceptions import ConfigurationError

pytest.importorskip("procrastinate")

from webhook_guard.queues.procrastinate import split_url  # after the skip: needs the engine

pytestmark = pytest.mark.services


@pytest.mark.timeout(120)
def test_the_procrastinate_cli_worker_finds_the_guard_by_webhook_guard_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`procrastinate --app=webhook_guard.queues.procrastinate.app worker --queues=<name>`, run
    from the project directory with no PYTHONPATH, runs WEBHOOK_GUARD_APP's Guard's handler,
    and a retry it defers itself."""
    with running("procrastinate", "sqlite", tmp_path, monkeypatch) as engine:
        command = [str(BIN / "procrastinate"), "--app=webhook_guard.queues.procrastinate.app"]
        command += ["worker", f"--queues={engine.queue_name}"]
        check_worker_cli(engine, command, pythonpath=False)


def test_the_url_names_the_database_the_queue_and_the_store() -> None:
    dsn, store, queue = split_url(
        "procrastinate+postgresql://app@db.internal:5433/shop?queue=hooks"
        "&store=redis://r:6379/1&sslmode=require"
    )
    assert dsn == "postgresql://app@db.internal:5433/shop?sslmode=require"
    assert (store, queue) == ("redis://r:6379/1", "hooks")
    assert split_url("procrastinate+postgres://h/db")[0] == "postgresql://h/db"
    with pytest.raises(ConfigurationError, match="procrastinate"):
        split_url("postgresql://h/db")


def test_the_repr_names_the_database_never_its_password(tmp_path: Path) -> None:
    from webhook_guard.queues.procrastinate import from_url

    queue = from_url(f"procrastinate+postgresql://app:hunter2@db:5432/shop?store={tmp_path}/s.db")
    assert "hunter2" not in repr(queue) and "db:5432/shop" in repr(queue)


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_handler_leaves_its_job_doing_until_retry_stalled_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """procrastinate's worker CLI killed with SIGKILL inside a handler: the job stays `doing`
    and our store says `processing`, and a new worker does not take it (procrastinate 3.10
    never runs a `doing` job again by itself: a worker's startup only prunes dead workers'
    rows); once the dead worker's heartbeat is old, retry_stalled_jobs queues it again and the
    new worker runs it to the end, once."""
    import os
    import signal
    import subprocess

    import psycopg

    from tests.queues.engines import SECRET, accepted_id, receive, store_of
    from tests.servers import stop, wait_until
    from webhook_guard import Guard
    from webhook_guard.queues.procrastinate import retry_stalled_jobs

    with running("procrastinate", "sqlite", tmp_path, monkeypatch) as engine:
        (tmp_path / "stall_app.py").write_text(STALL_APP.format(secret=SECRET))
        (tmp_path / "SLOW").touch()
        runs = tmp_path / "runs.log"
        env = {
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",  # this tree's webhook_guard
            "WEBHOOK_GUARD_QUEUE": engine.queue_url(),
            "WEBHOOK_GUARD_APP": "stall_app:guard",
        }
        command = [str(BIN / "procrastinate"), "--app=webhook_guard.queues.procrastinate.app"]
        command += ["worker", f"--queues={engine.queue_name}"]
        queue = engine.open()
        sender = Guard(SECRET, queue=queue, endpoint="kill9", worker="external")
        delivery_id = accepted_id(receive(sender, b'{"n": 1}'))

        def worker() -> subprocess.Popen[bytes]:
            return spawn(command, env, tmp_path / "worker.log", cwd=tmp_path)

        def lines() -> list[str]:
            return runs.read_text().splitlines() if runs.exists() else []

        def job_status() -> str:
            with psycopg.connect(engine.broker_url(), autocommit=True) as conn:
                row = conn.execute(
                    "SELECT status FROM procrastinate_jobs WHERE queue_name = %s",
                    (engine.queue_name,),
                ).fetchone()
            assert row is not None
            return str(row[0])

        first = worker()
        log = tmp_path / "worker.log"
        assert wait_until(lambda: lines() == [f"start {delivery_id} 1"], 60), log.read_text()
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert job_status() == "doing"
        assert store_of(sender).get(delivery_id).status == "processing"
        # Within the default heartbeat age (30 s) a worker counts as alive: nothing is taken.
        assert retry_stalled_jobs(queue) == 0
        (tmp_path / "SLOW").unlink()
        second = worker()
        try:
            time.sleep(2.0)  # older than the 1 s below: the killed worker's last heartbeat
            assert lines() == [f"start {delivery_id} 1"] and job_status() == "doing"
            assert retry_stalled_jobs(queue, seconds_since_heartbeat=1.0) == 1
            assert wait_until(lambda: len(lines()) == 3, 60), log.read_text()
            assert wait_until(lambda: job_status() == "succeeded", 30)
        finally:
            stop(second)
        assert lines() == [
            f"start {delivery_id} 1",
            f"start {delivery_id} 1",
            f"done {delivery_id}",
        ]
        assert store_of(sender).get(delivery_id).status == "processed"
        assert retry_stalled_jobs(queue, seconds_since_heartbeat=1.0) == 0
