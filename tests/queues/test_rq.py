"""RQ only: its URL, its jobs on the wire, its worker CLI, and the history CLI on its Redis store.
What every engine does, RQ included, is in ``test_engine_suite.py``; the harnesses are in
``engines.py``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rq", reason="RQ is not installed: pip install 'webhook-guard[rq]'")

import redis

from tests.queues.engines import (
    SECRET,
    Handler,
    accepted_id,
    check_worker_cli,
    fail_always,
    receive,
    running,
    status_is,
)
from tests.servers import BIN, ROOT, free_port
from webhook_guard.queues import open_queue
from webhook_guard.queues.rq import QUEUE_NAME, RQQueue
from webhook_guard.stores.redis import RedisStore

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

BODY = bytes(range(256)) + b'\r\n{"not": "json"'  # every byte value, not UTF-8, not JSON


def test_open_queue_builds_an_rq_queue_without_connecting() -> None:
    """rq:// URLs reach RQQueue with their queue name and store; nothing connects yet."""
    store_url = "redis://127.0.0.1:6379/11"
    queue = open_queue(f"rq://127.0.0.1:{free_port()}/3?queue=hooks&store={store_url}")
    assert isinstance(queue, RQQueue) and queue.engine == "rq"
    assert queue.queue_name == "hooks" and isinstance(queue.store, RedisStore)
    assert queue.connection.connection_pool.connection_kwargs["socket_connect_timeout"] == 1.0


def test_a_job_is_json_on_the_wire_under_an_rq_safe_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job RQ stores for attempt 1 is JSON, not pickle, under the id ``<delivery id>-1``."""
    with running("rq", "sqlite", tmp_path, monkeypatch) as engine:
        guard = engine.guard(Handler())
        delivery_id = accepted_id(receive(guard, BODY))
        assert re.fullmatch(r"[A-Za-z0-9_-]+", f"{delivery_id}-1"), "RQ's job id alphabet"
        job = redis.Redis(db=engine.broker_db).hgetall(f"rq:job:{delivery_id}-1")
        func, _, args, _ = json.loads(zlib.decompress(job[b"data"]))
    assert func == "webhook_guard.queues.rq.process" and args[0]["id"] == delivery_id


def test_the_cli_reads_the_redis_store_and_replays_through_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`history`/`show --store` read the Redis store; `replay` needs --app, then republishes."""
    with running("rq", "redis", tmp_path, monkeypatch) as engine:
        handler = Handler(fail_always)
        guard = engine.guard(handler)
        dead = accepted_id(receive(guard, b'{"fail": "always"}'))
        assert receive(guard, b'{"event": "forged"}', tamper=True).status == 401
        store_url = engine.store_url
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        options: dict[str, Any] = {"capture_output": True, "text": True, "env": env, "timeout": 60}
        cli = [sys.executable, "-m", "webhook_guard"]
        with engine.worker(guard.queue) as worker:
            worker.until(status_is(guard, dead, "dead"))
            shown = subprocess.run(
                [*cli, "history", "--store", store_url, "--failed", "--json"], **options, check=True
            )
            statuses = {json.loads(line)["status"] for line in shown.stdout.splitlines()}
            assert statuses == {"dead", "rejected"}
            show = subprocess.run(
                [*cli, "show", dead[:10], "--store", store_url, "--json"], **options, check=True
            )
            assert json.loads(show.stdout)["status"] == "dead"
            refused = subprocess.run([*cli, "replay", dead, "--store", store_url], **options)
            assert refused.returncode == 2 and "--app" in refused.stderr

            (tmp_path / "rq_app.py").write_text(
                "from webhook_guard import Guard\n"
                "from webhook_guard.queues.rq import from_url\n"
                f"guard = Guard({SECRET!r}, queue=from_url({engine.queue_url()!r}),"
                f" endpoint={guard.endpoint!r}, worker='external')\n"
            )
            replayed = subprocess.run(
                [*cli, "replay", dead, "--app", "rq_app:guard"], **options, cwd=tmp_path
            )
            assert replayed.returncode == 0, replayed.stderr
            handler.fail = None
            worker.until(status_is(guard, dead, "processed"))
    assert handler.attempts(dead) == [1, 2, 3, 4, 1]


def test_the_documented_rq_worker_command_processes_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rq worker --with-scheduler --serializer JSONSerializer`, as documented, runs and retries."""
    with running("rq", "redis", tmp_path, monkeypatch) as engine:
        command = [str(BIN / "rq"), "worker", "--with-scheduler"]
        command += ["--serializer", "rq.serializers.JSONSerializer"]
        check_worker_cli(engine, [*command, "--url", engine.broker_url(), QUEUE_NAME])
