"""Celery as the queue engine, against real Redis and RabbitMQ with Celery's real worker.

In-process tests run ``celery.contrib.testing.worker.start_worker`` (pool ``solo``) in a thread;
one test runs the ``celery worker`` CLI in a fresh process. Each test gets its own queue name
(and Redis DB 13, flushed before and after), so a stray message never reaches another test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import BIN, ROOT, free_port, processed, sample_env, stop, wait_until
from tests.services import redis_server, require_rabbitmq, require_redis
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard, Outcome
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.exceptions import Retry
from webhook_guard.queues import broker as broker_module
from webhook_guard.queues import open_queue
from webhook_guard.queues.sqlite import DeliveryRecord, SQLiteQueue
from webhook_guard.testing import sign_request

pytest.importorskip("celery")
redis = pytest.importorskip("redis")

from celery.contrib.testing.worker import start_worker  # noqa: E402
from kombu import Connection  # noqa: E402

from webhook_guard.queues.celery import CeleryQueue  # noqa: E402

pytestmark = pytest.mark.services

SECRET = "celery-test-secret"
REDIS_DB = 13
BROKERS = {
    "redis": f"redis://127.0.0.1:6379/{REDIS_DB}",
    "amqp": "amqp://guest:guest@127.0.0.1:5672//",
}
QUICK_RETRY = RetryPolicy(max_attempts=4, base_seconds=0.2, cap_seconds=0.5)


@pytest.fixture(params=sorted(BROKERS))
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CeleryQueue]:
    """A CeleryQueue on a fresh queue name, its store in ``tmp_path``; broker cleaned after."""
    name = f"wg_test_{uuid.uuid4().hex[:12]}"
    broker = BROKERS[request.param]
    if request.param == "redis":
        require_redis()
        redis.Redis(db=REDIS_DB).flushdb()
    else:
        require_rabbitmq()
    queue = open_queue(f"celery+{broker}?queue={name}&store={tmp_path / 'store.db'}")
    assert isinstance(queue, CeleryQueue)
    # Only so the embedded worker's event loop wakes every second and stops quickly.
    queue.app.conf.broker_heartbeat = 0
    try:
        yield queue
    finally:
        queue.close()
        _clean_broker(broker, name)


def _clean_broker(broker: str, name: str) -> None:
    if broker.startswith("redis://"):
        redis.Redis(db=REDIS_DB).flushdb()
        return
    with Connection(broker) as conn:
        channel = conn.default_channel
        with contextlib.suppress(Exception):
            channel.queue_delete(name)
        with contextlib.suppress(Exception):
            channel.exchange_delete(name)


@contextlib.contextmanager
def running_worker(queue: CeleryQueue) -> Iterator[Any]:
    """Celery's own worker, in a thread of this process, consuming ``queue``."""
    with start_worker(
        queue.app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
    ) as worker:
        yield worker


def _guard(queue: CeleryQueue, handler: Any) -> Guard:
    guard = Guard(
        SECRET,
        queue=queue,
        endpoint=f"celery-{uuid.uuid4().hex[:8]}",
        worker="external",
        retry=QUICK_RETRY,
    )
    guard.add_handler(handler)
    return guard


def _send(guard: Guard, body: bytes, headers: dict[str, str] | None = None) -> Outcome:
    """POST ``body``, signed (with a fresh delivery id unless ``headers`` are given again)."""
    headers = headers or sign_request("cloudaipilot", SECRET, body)
    return guard.receive("POST", "/webhook", headers, body)


def _accepted_id(outcome: Outcome) -> str:
    assert outcome.status == 200, outcome.body
    return str(json.loads(outcome.body)["id"])


def _store(queue: Any) -> SQLiteQueue:
    assert isinstance(queue.store, SQLiteQueue)
    return queue.store


def _wait_for_status(queue: CeleryQueue, delivery_id: str, status: str) -> DeliveryRecord:
    """Poll the store's history (SQLite or Redis: both have ``get``) until ``status``."""
    history: Any = queue.store

    def reached() -> bool:
        record = history.get(delivery_id)
        return record is not None and record.status == status

    assert wait_until(reached, limit=30), history.get(delivery_id)
    record: DeliveryRecord = history.get(delivery_id)
    return record


def test_a_delivery_round_trips_byte_exact(queue: CeleryQueue) -> None:
    """receive -> broker -> Celery worker -> handler: the handler gets the very bytes sent."""
    runs: list[Delivery] = []
    guard = _guard(queue, runs.append)
    body = b"\xff\xfe\x00 not UTF-8 \x80" + bytes(range(256))
    delivery_id = _accepted_id(_send(guard, body))
    with running_worker(queue):
        record = _wait_for_status(queue, delivery_id, "processed")
    (run,) = runs
    assert run.body == body and run.id == delivery_id and run.attempt == 1
    assert run.header("x-cloudaipilot-signature") is not None
    assert [a.outcome for a in record.attempt_log] == ["processed"]


def test_a_duplicate_is_not_processed_twice(queue: CeleryQueue) -> None:
    """The same delivery again answers duplicate with the first id and never reaches a worker."""
    runs: list[Delivery] = []
    guard = _guard(queue, runs.append)
    body = b'{"event": "dup"}'
    headers = sign_request("cloudaipilot", SECRET, body)
    first = _accepted_id(_send(guard, body, headers))
    again = _send(guard, body, headers)
    assert again.status == 200
    assert json.loads(again.body) == {"status": "duplicate", "id": first}
    with running_worker(queue):
        _wait_for_status(queue, first, "processed")
        # Published after the duplicate: once it ran, anything published before has too.
        barrier = _accepted_id(_send(guard, b'{"event": "barrier"}'))
        _wait_for_status(queue, barrier, "processed")
    assert [run.id for run in runs] == [first, barrier]


def test_a_failing_handler_is_retried_with_backoff(queue: CeleryQueue) -> None:
    """Fails twice, succeeds on attempt 3; each retry waits its delay; history shows it all."""
    attempts: list[int] = []

    def flaky(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            raise RuntimeError("first attempt fails")
        if delivery.attempt == 2:
            raise Retry(after=0.4)

    guard = _guard(queue, flaky)
    delivery_id = _accepted_id(_send(guard, b'{"event": "flaky"}'))
    with running_worker(queue):
        record = _wait_for_status(queue, delivery_id, "processed")
    assert attempts == [1, 2, 3]
    assert [a.outcome for a in record.attempt_log] == ["failed", "failed", "processed"]
    assert "RuntimeError: first attempt fails" in (record.attempt_log[0].error or "")
    second, third = record.attempt_log[1], record.attempt_log[2]
    assert third.started_at - second.started_at >= 0.35, "the countdown was honoured"


def test_a_dead_letter_is_kept_and_replayed(queue: CeleryQueue) -> None:
    """Always failing: dead in our store with its traceback; replay runs it again."""
    broken = threading.Event()
    broken.set()
    runs: list[int] = []

    def handler(delivery: Delivery) -> None:
        runs.append(delivery.attempt)
        if broken.is_set():
            raise RuntimeError("downstream API is down")

    guard = _guard(queue, handler)
    delivery_id = _accepted_id(_send(guard, b'{"event": "doomed"}'))
    with running_worker(queue):
        dead = _wait_for_status(queue, delivery_id, "dead")
        assert [a.outcome for a in dead.attempt_log] == ["failed"] * 3 + ["dead"]
        assert "downstream API is down" in (dead.attempt_log[-1].traceback or "")
        assert "downstream API is down" in (dead.last_error or "")
        broken.clear()
        assert queue.replay([delivery_id]) == 1
        replayed = _wait_for_status(queue, delivery_id, "processed")
    assert runs == [1, 2, 3, 4, 1]
    assert [a.outcome for a in replayed.attempt_log][-1] == "processed"


def test_a_worker_without_the_guard_keeps_the_delivery(
    queue: CeleryQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that cannot find the endpoint's Guard sends the delivery again later instead of
    dropping it; once the Guard is there, it runs."""
    monkeypatch.setattr("webhook_guard.queues.celery.REDELIVER_SECONDS", 0.3)
    runs: list[Delivery] = []
    guard = _guard(queue, runs.append)
    del broker_module._GUARDS[guard.endpoint]  # as in a worker that never imported the app
    delivery_id = _accepted_id(_send(guard, b'{"event": "orphan"}'))
    misses = _Recorder()
    logging.getLogger("webhook_guard.queues").addHandler(misses)
    try:
        with running_worker(queue):
            assert wait_until(lambda: len(misses.messages) >= 3, limit=30), "sent again, twice"
            assert all("no Guard for endpoint" in m for m in misses.messages)
            assert _store(queue).get(delivery_id).status == "queued"  # type: ignore[union-attr]
            queue.bind(guard)
            _wait_for_status(queue, delivery_id, "processed")
    finally:
        logging.getLogger("webhook_guard.queues").removeHandler(misses)
    assert [run.id for run in runs] == [delivery_id]


class _Recorder(logging.Handler):
    """Keeps the messages logged to the logger it is added to, whatever the engine did to
    the root logger's handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.timeout(90)
def test_a_stopped_redis_answers_503_and_loses_nothing(tmp_path: Path) -> None:
    """Redis killed: 503 + Retry-After, nothing left reserved; back on the same port: 200, run."""
    require_redis()
    port = free_port()
    runs: list[bytes] = []
    queue = open_queue(f"celery+redis://127.0.0.1:{port}/0?store={tmp_path / 'store.db'}")
    assert isinstance(queue, CeleryQueue)
    guard = _guard(queue, lambda d: runs.append(d.body))
    with redis_server(port) as server:
        with running_worker(queue):
            before = _accepted_id(_send(guard, b'{"n": "before"}'))
            _wait_for_status(queue, before, "processed")
            server.kill()
            server.wait()
            during = b'{"n": "during"}'
            headers = sign_request("cloudaipilot", SECRET, during)
            down = _send(guard, during, headers)
            assert down.status == 503 and json.loads(down.body) == {"error": "queue_unavailable"}
            assert dict(down.headers).get("Retry-After")
            assert [r.id for r in _store(queue).deliveries()] == [before], "released"
            with redis_server(port):
                # The sender's retry: not a duplicate of a delivery that was never published.
                again = _send(guard, during, headers)
                assert json.loads(again.body)["status"] == "ok"
                _wait_for_status(queue, _accepted_id(again), "processed")
    assert runs == [b'{"n": "before"}', b'{"n": "during"}']


@pytest.mark.timeout(30)
def test_an_unreachable_rabbitmq_answers_503_and_releases(tmp_path: Path) -> None:
    """Nothing listens on the AMQP port: 503 at once, and no reservation is left behind."""
    broker = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    queue = open_queue(f"celery+{broker}?store={tmp_path / 'store.db'}")
    assert isinstance(queue, CeleryQueue)
    guard = _guard(queue, lambda d: None)
    outcome = _send(guard, b'{"n": 1}')
    assert outcome.status == 503 and dict(outcome.headers).get("Retry-After")
    assert _store(queue).deliveries() == []


def test_the_store_can_live_in_redis() -> None:
    """With ``?store=redis://...`` dedupe and history live in Redis (shared by every host) and
    the flow is the same: one run, the duplicate named, the history processed."""
    require_redis()
    redis.Redis(db=REDIS_DB).flushdb()
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    queue = open_queue(
        f"celery+{redis_url}?queue=wg_test_{uuid.uuid4().hex[:12]}&store={redis_url}"
    )
    assert isinstance(queue, CeleryQueue) and type(queue.store).__name__ == "RedisStore"
    runs: list[bytes] = []
    guard = _guard(queue, lambda d: runs.append(d.body))
    body = b"\x00\xffredis store"
    headers = sign_request("cloudaipilot", SECRET, body)
    try:
        first = _accepted_id(_send(guard, body, headers))
        assert json.loads(_send(guard, body, headers).body) == {"status": "duplicate", "id": first}
        with running_worker(queue):
            record = _wait_for_status(queue, first, "processed")
        assert runs == [body] and record.body_sha256 == hashlib.sha256(body).hexdigest()
    finally:
        queue.close()
        redis.Redis(db=REDIS_DB).flushdb()


@contextlib.contextmanager
def _silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a hung broker."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel completes handshakes; nobody ever reads or writes
        yield int(server.getsockname()[1])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["redis", "amqp"])
def test_a_hung_broker_answers_503_without_hanging(kind: str, tmp_path: Path) -> None:
    """A broker that accepts connections but never answers: 503 once the timeouts run out."""
    with _silent_listener() as port:
        broker = (
            f"redis://127.0.0.1:{port}/0"
            if kind == "redis"
            else f"amqp://guest:guest@127.0.0.1:{port}//"
        )
        queue = open_queue(f"celery+{broker}?store={tmp_path / 'store.db'}")
        assert isinstance(queue, CeleryQueue)
        outcome = _send(_guard(queue, lambda d: None), b'{"n": 1}')
    assert outcome.status == 503 and dict(outcome.headers).get("Retry-After")
    assert _store(queue).deliveries() == []


@pytest.mark.timeout(120)
def test_the_celery_cli_worker_finds_the_guard_by_webhook_guard_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`celery -A webhook_guard.queues.celery:celery_app worker` in a fresh process runs the
    sample app's handler (found through WEBHOOK_GUARD_APP), retries included."""
    require_redis()
    redis.Redis(db=REDIS_DB).flushdb()
    name = f"wg_cli_{uuid.uuid4().hex[:12]}"
    env = sample_env(
        tmp_path,
        WEBHOOK_GUARD_QUEUE=f"celery+redis://127.0.0.1:6379/{REDIS_DB}?queue={name}",
        WEBHOOK_GUARD_APP="sample_apps.flask_app:guard",
    )
    monkeypatch.setenv("WEBHOOK_GUARD_DB", env["WEBHOOK_GUARD_DB"])
    from webhook_guard.demo.sample import sample_guard

    guard = sample_guard(env)
    secret = env["WEBHOOK_SECRET"].split(",")[0]
    bodies = [b'{"event": "cli.ok"}', b'{"event": "cli.retry", "fail": 1}']
    ids = [
        _accepted_id(guard.receive("POST", "/webhook", sign_request("cloudaipilot", secret, b), b))
        for b in bodies
    ]
    command = [str(BIN / "celery"), "-A", "webhook_guard.queues.celery:celery_app", "worker"]
    command += ["-Q", name, "--pool", "solo", "--without-mingle", "--without-gossip"]
    log = tmp_path / "worker.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [*command, "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        done = wait_until(lambda: {p["id"] for p in processed(tmp_path)} == set(ids), limit=60)
        assert done, log.read_text()[-3000:]
    finally:
        stop(worker)
        redis.Redis(db=REDIS_DB).flushdb()
    first, retried = (_store(guard.queue).get(i) for i in ids)
    assert first is not None and first.status == "processed"
    assert retried is not None
    assert [a.outcome for a in retried.attempt_log] == ["failed", "processed"]
