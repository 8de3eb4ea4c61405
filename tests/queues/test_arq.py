"""arq: the shared engine suite, run here for arq only, and what only arq does (its URL, the
async ``areceive`` path and its one publishing loop thread, its worker CLI).

arq 0.28 needs redis<6 and Celery's kombu needs redis>=6.4, so this module runs in its own
environment: ``make test-arq`` (``.venv-arq``); elsewhere it skips."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

pytest.importorskip(
    "arq",
    reason="arq needs redis<6, so it is not installed here: it runs in .venv-arq (make test-arq)",
)

import redis

from tests.queues.engines import (
    Handler,
    accepted_id,
    areceive,
    check_worker_cli,
    receive,
    running,
    status_is,
    store_of,
)
from tests.queues.test_engine_suite import *  # noqa: F403 - the shared suite, collected here
from tests.servers import BIN, free_port
from webhook_guard.queues import open_queue
from webhook_guard.queues.arq import ArqQueue
from webhook_guard.stores.redis import RedisStore

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

ENGINES = ("arq",)  # the harnesses the imported suite runs on, in this module
BODY = bytes(range(256)) + b'\r\n{"not": "json"'  # every byte value, not UTF-8, not JSON


def test_open_queue_builds_an_arq_queue_without_connecting() -> None:
    """arq:// URLs reach ArqQueue with their queue name and store, failing fast when down."""
    store_url = "redis://127.0.0.1:6379/11"
    queue = open_queue(f"arq://127.0.0.1:{free_port()}/3?queue=hooks&store={store_url}")
    assert isinstance(queue, ArqQueue) and queue.engine == "arq"
    assert queue.queue_name == "hooks" and isinstance(queue.store, RedisStore)
    assert (queue.settings.database, queue.settings.conn_timeout) == (3, 1)
    assert queue.settings.conn_retries == 0


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_areceive_and_receive_share_one_loop_thread_and_json_on_the_wire(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """receive and areceive both go byte-exact; JSON on the wire; sync publishes use one thread."""
    with running("arq", store, tmp_path, monkeypatch) as engine:
        handler = Handler()
        guard = engine.guard(handler)
        sync_ids = [accepted_id(receive(guard, BODY + bytes([n]))) for n in range(3)]
        async_id = accepted_id(areceive(guard, BODY))
        raw = redis.Redis(db=engine.broker_db).get(f"arq:job:{async_id}:1")
        job = json.loads(raw or b"null")
        assert job["f"] == "webhook_guard_process" and job["a"][0]["id"] == async_id
        threads = [t for t in threading.enumerate() if t.name == "webhook-guard-arq"]
        assert len(threads) == 1
        ids = [*sync_ids, async_id]
        with engine.worker(guard.queue) as worker:
            worker.until(lambda: all(status_is(guard, i, "processed")() for i in ids))
        assert sorted(handler.calls) == sorted(
            [(i, 1, BODY + bytes([n])) for n, i in enumerate(sync_ids)] + [(async_id, 1, BODY)]
        )
        assert store_of(guard).get(async_id).body == BODY


def test_the_documented_arq_worker_command_processes_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`arq webhook_guard.queues.arq.WorkerSettings`, as documented, runs deliveries and retries."""
    with running("arq", "redis", tmp_path, monkeypatch) as engine:
        check_worker_cli(engine, [str(BIN / "arq"), "webhook_guard.queues.arq.WorkerSettings"])
