"""arq against real Redis, with arq's own Worker in this process: bytes through the wire, dedupe,
our retries and dead letters, replay, a broker that dies; sync and async enqueue paths.

arq 0.28 needs redis<6 and Celery's kombu needs redis>=6.4, so this module runs in its own
environment: ``make test-arq`` (``.venv-arq``); elsewhere it skips."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "arq",
    reason="arq needs redis<6, so it is not installed here: it runs in .venv-arq (make test-arq)",
)

import redis
from arq import create_pool
from arq.worker import create_worker

from tests.servers import BIN, ROOT, free_port, kill_hard, serve, stop, wait_until
from tests.services import require_redis
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard, Outcome
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.history import history_rows
from webhook_guard.queues import broker, open_queue
from webhook_guard.queues.arq import (
    QUEUE_NAME,
    ArqQueue,
    WorkerSettings,
    dumps,
    from_url,
    loads,
    redis_settings,
)
from webhook_guard.stores.redis import RedisStore
from webhook_guard.testing import sign_request

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

BROKER_DB, STORE_DB = 10, 11
BROKER_URL = f"redis://127.0.0.1:6379/{BROKER_DB}"
STORE_URL = f"redis://127.0.0.1:6379/{STORE_DB}"
SECRET = "arq-secret"
ENDPOINT = "arq-tests"
POLICY = RetryPolicy(max_attempts=4, base_seconds=0.2, cap_seconds=0.5)
BODY = bytes(range(256)) + b'\r\n{"not": "json"'  # every byte value, not UTF-8, not JSON


def _flush() -> None:
    for db in (BROKER_DB, STORE_DB):
        redis.Redis(db=db).flushdb()


@pytest.fixture(autouse=True)
def _services() -> Iterator[None]:
    require_redis()
    _flush()
    yield
    _flush()


@pytest.fixture
def guards() -> Iterator[list[Guard]]:
    """Guards made by a test; their queues (and publishing threads) are closed after it."""
    made: list[Guard] = []
    yield made
    for guard in made:
        guard.queue.close()


@pytest.fixture(params=["sqlite", "redis"])
def store_query(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The store part of the queue URL: none (SQLite at WEBHOOK_GUARD_DB) or a Redis store."""
    monkeypatch.setenv("WEBHOOK_GUARD_DB", str(tmp_path / "store.db"))
    return f"?store={STORE_URL}" if request.param == "redis" else ""


class Handler:
    """Records every attempt; raises on the attempts the body asks for (``{"fail": N}``, or
    ``{"fail": "always"}`` while ``always_fails``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bytes]] = []
        self.always_fails = True

    def __call__(self, delivery: Delivery) -> None:
        self.calls.append((delivery.id, delivery.attempt, delivery.body))
        try:
            fail = json.loads(delivery.body).get("fail")
        except ValueError:
            fail = None
        if (fail == "always" and self.always_fails) or (
            isinstance(fail, int) and delivery.attempt <= fail
        ):
            raise RuntimeError(f"asked to fail on attempt {delivery.attempt}")

    def attempts(self, delivery_id: str) -> list[int]:
        return [attempt for i, attempt, _ in self.calls if i == delivery_id]


def make_guard(url: str, guards: list[Guard]) -> tuple[Guard, Handler]:
    guard = Guard(SECRET, queue=from_url(url), endpoint=ENDPOINT, worker="external", retry=POLICY)
    handler = Handler()
    guard.add_handler(handler)
    guards.append(guard)
    return guard, handler


def signed(body: bytes, msg_id: str | None = None) -> dict[str, str]:
    """Headers of a signed POST; the same ``msg_id`` twice is the sender retrying."""
    return sign_request("cloudaipilot", SECRET, body, msg_id=msg_id)


def send(guard: Guard, body: bytes, *, msg_id: str | None = None, tamper: bool = False) -> Outcome:
    sent = body + (b"!" if tamper else b"")
    return guard.receive("POST", "/webhook", signed(body, msg_id), sent)


def asend(guard: Guard, body: bytes, *, msg_id: str | None = None) -> Outcome:
    """The ASGI path: ``areceive`` -> ``aenqueue`` awaited on this (short-lived) event loop."""
    return asyncio.run(guard.areceive("POST", "/webhook", signed(body, msg_id), body))


def accepted_id(outcome: Outcome) -> str:
    assert outcome.status == 200, outcome
    delivery_id: str = json.loads(outcome.body)["id"]
    return delivery_id


def store_of(guard: Guard) -> Any:
    assert isinstance(guard.queue, ArqQueue)
    return guard.queue.store


def status_is(guard: Guard, delivery_id: str, status: str) -> Callable[[], bool]:
    return lambda: getattr(store_of(guard).get(delivery_id), "status", None) == status


async def _drain(until: Callable[[], bool], url: str, limit: float, **options: Any) -> None:
    pool = await create_pool(
        redis_settings(url),
        job_serializer=dumps,
        job_deserializer=loads,
        default_queue_name=QUEUE_NAME,
    )
    deadline = time.monotonic() + limit
    try:
        while True:
            worker = create_worker(
                WorkerSettings,
                redis_pool=pool,
                burst=True,
                handle_signals=False,
                poll_delay=0.05,
                **options,
            )
            await worker.main()
            if until():
                return
            assert time.monotonic() < deadline, "the arq worker did not get there in time"
            await asyncio.sleep(0.05)
    finally:
        await pool.aclose()


def drain(
    until: Callable[[], bool], url: str = BROKER_URL, limit: float = 60.0, **options: Any
) -> None:
    """Run arq's Worker (settings from ``WorkerSettings``) in burst mode, at least once and
    until ``until()`` holds (a retry published while a burst worker ends needs another run)."""
    asyncio.run(_drain(until, url, limit, **options))


def test_a_worker_without_the_guard_keeps_the_delivery(
    store_query: str, guards: list[Guard], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that cannot find the endpoint's Guard asks arq to run the job again later;
    once the Guard is there the delivery is processed, not dropped."""
    monkeypatch.setattr("webhook_guard.queues.arq.REDELIVER_SECONDS", 0.3)
    monkeypatch.delenv("WEBHOOK_GUARD_APP", raising=False)
    guard, handler = make_guard(f"arq://127.0.0.1:6379/{BROKER_DB}{store_query}", guards)
    delivery_id = accepted_id(send(guard, b'{"n": 1}'))
    monkeypatch.delitem(broker._GUARDS, ENDPOINT)
    drain(lambda: True, max_burst_jobs=1)  # one job: it fails, arq defers it again
    assert handler.calls == [] and store_of(guard).get(delivery_id).status == "queued"
    assert redis.Redis(db=BROKER_DB).zscore(QUEUE_NAME, f"{delivery_id}:1") is not None
    guard.queue.bind(guard)  # type: ignore[attr-defined]
    drain(status_is(guard, delivery_id, "processed"))
    assert handler.calls == [(delivery_id, 1, b'{"n": 1}')]


def test_open_queue_builds_an_arq_queue_without_connecting() -> None:
    """arq:// URLs reach ArqQueue with their queue name and store, failing fast when down."""
    queue = open_queue(f"arq://127.0.0.1:{free_port()}/3?queue=hooks&store={STORE_URL}")
    assert isinstance(queue, ArqQueue) and queue.engine == "arq"
    assert queue.queue_name == "hooks" and isinstance(queue.store, RedisStore)
    assert (queue.settings.database, queue.settings.conn_timeout) == (3, 1)
    assert queue.settings.conn_retries == 0


def test_round_trip_is_byte_exact_sync_and_async(store_query: str, guards: list[Guard]) -> None:
    """Signed non-UTF-8 bodies go receive/areceive -> Redis -> arq worker -> handler byte for
    byte; the job on the wire is JSON; sync publishing uses one loop thread, not one per call."""
    guard, handler = make_guard(f"arq://127.0.0.1:6379/{BROKER_DB}{store_query}", guards)
    sync_ids = [accepted_id(send(guard, BODY + bytes([n]))) for n in range(3)]
    async_id = accepted_id(asend(guard, BODY))
    raw = redis.Redis(db=BROKER_DB).get(f"arq:job:{async_id}:1")
    job = json.loads(raw or b"null")
    assert job["f"] == "webhook_guard_process" and job["a"][0]["id"] == async_id
    threads = [t for t in threading.enumerate() if t.name == "webhook-guard-arq"]
    assert len(threads) == 1
    drain(lambda: all(status_is(guard, i, "processed")() for i in [*sync_ids, async_id]))
    assert sorted(handler.calls) == sorted(
        [(i, 1, BODY + bytes([n])) for n, i in enumerate(sync_ids)] + [(async_id, 1, BODY)]
    )
    assert store_of(guard).get(async_id).body == BODY


def test_a_duplicate_is_answered_but_not_processed_twice(
    store_query: str, guards: list[Guard]
) -> None:
    """The same delivery twice (sync, then async): 200 duplicate naming the first id; one run."""
    guard, handler = make_guard(f"arq://127.0.0.1:6379/{BROKER_DB}{store_query}", guards)
    first = accepted_id(send(guard, b'{"event": "x"}', msg_id="evt-1"))
    again = asend(guard, b'{"event": "x"}', msg_id="evt-1")
    assert again.status == 200 and json.loads(again.body) == {"status": "duplicate", "id": first}
    drain(status_is(guard, first, "processed"))
    drain(lambda: True)  # one more burst: nothing else may be queued
    assert handler.calls == [(first, 1, b'{"event": "x"}')]
    assert len(store_of(guard).deliveries()) == 1


def test_fails_twice_then_succeeds_on_attempt_three_with_backoff(
    store_query: str, guards: list[Guard], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two failures, then success: each retry is published with a delay from the policy and
    does not start before that delay has passed."""
    guard, handler = make_guard(f"arq://127.0.0.1:6379/{BROKER_DB}{store_query}", guards)
    queue = guard.queue
    assert isinstance(queue, ArqQueue)
    published: list[tuple[int, float, float]] = []
    publish = queue.publish

    def spy(envelope: dict[str, Any], delay: float = 0.0) -> None:
        published.append((envelope["attempt"], delay, time.time()))
        publish(envelope, delay)

    monkeypatch.setattr(queue, "publish", spy)
    delivery_id = accepted_id(send(guard, b'{"fail": 2}'))
    drain(status_is(guard, delivery_id, "processed"))
    assert handler.attempts(delivery_id) == [1, 2, 3]
    assert [attempt for attempt, _, _ in published] == [1, 2, 3] and published[0][1] == 0.0
    assert all(0 < delay <= POLICY.cap_seconds for _, delay, _ in published[1:])
    log = store_of(guard).get(delivery_id).attempt_log
    assert [a.outcome for a in log] == ["failed", "failed", "processed"]
    for (_, delay, at), attempt in zip(published[1:], log[1:], strict=True):
        assert attempt.started_at >= at + delay - 0.005  # arq counts whole milliseconds


def test_always_failing_is_dead_with_a_traceback_and_replay_runs_it_again(
    store_query: str, guards: list[Guard]
) -> None:
    """After max_attempts the delivery is dead in our store, traceback kept; replay reruns it
    (arq keeps no result, so attempt 1's job id is free again)."""
    guard, handler = make_guard(f"arq://127.0.0.1:6379/{BROKER_DB}{store_query}", guards)
    delivery_id = accepted_id(send(guard, b'{"fail": "always"}'))
    drain(status_is(guard, delivery_id, "dead"))
    record = store_of(guard).get(delivery_id)
    assert record.attempts == 4 and handler.attempts(delivery_id) == [1, 2, 3, 4]
    assert [a.outcome for a in record.attempt_log] == ["failed"] * 3 + ["dead"]
    assert "RuntimeError: asked to fail on attempt 4" in (record.attempt_log[-1].traceback or "")
    assert "gave up after 4 attempts" in (record.last_error or "")
    handler.always_fails = False
    assert guard.queue.replay([delivery_id]) == 1  # type: ignore[attr-defined]
    drain(status_is(guard, delivery_id, "processed"))
    assert handler.attempts(delivery_id) == [1, 2, 3, 4, 1]
    outcomes = [a.outcome for a in store_of(guard).get(delivery_id).attempt_log]
    assert outcomes == ["failed"] * 3 + ["dead", "processed"]


def _redis_command(port: int, directory: Path) -> list[str]:
    return [
        *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no", "--dir", str(directory)),
    ]


def _timed(call: Callable[[], Outcome]) -> tuple[Outcome, float]:
    started = time.monotonic()
    outcome = call()
    return outcome, time.monotonic() - started


def test_a_dead_broker_answers_503_at_once_and_keeps_nothing(
    store_query: str, tmp_path: Path, guards: list[Guard]
) -> None:
    """A second redis-server is the broker. Killed: 503 + Retry-After from receive and
    areceive without hanging, nothing reserved. Restarted on the same port: the sender's retry
    is accepted and processed."""
    port = free_port()
    command, log = _redis_command(port, tmp_path), tmp_path / "broker.log"
    with serve(command, dict(os.environ), port, log) as broker:
        guard, handler = make_guard(f"arq://127.0.0.1:{port}/0{store_query}", guards)
        warm = accepted_id(send(guard, b'{"n": 0}'))  # the pool now holds a live connection
        kill_hard(broker)
        down, elapsed = _timed(lambda: send(guard, b'{"n": 1}', msg_id="evt-1"))
        adown, aelapsed = _timed(lambda: asend(guard, b'{"n": 2}', msg_id="evt-2"))
    for outcome, seconds in ((down, elapsed), (adown, aelapsed)):
        assert outcome.status == 503 and json.loads(outcome.body) == {"error": "queue_unavailable"}
        assert dict(outcome.headers).get("Retry-After") and seconds < 5, seconds
    assert [d.id for d in store_of(guard).deliveries()] == [warm]  # nothing kept for n=1, n=2
    with serve(command, dict(os.environ), port, log):
        retried = send(guard, b'{"n": 1}', msg_id="evt-1")
        assert json.loads(retried.body)["status"] == "ok"  # the dedupe key was released
        delivery_id = accepted_id(retried)
        drain(status_is(guard, delivery_id, "processed"), url=f"redis://127.0.0.1:{port}/0")
    assert handler.calls == [(delivery_id, 1, b'{"n": 1}')]


def test_history_reads_the_redis_store(guards: list[Guard]) -> None:
    """With RedisStore as the store, history_rows lists processed, dead and rejected."""
    guard, _ = make_guard(f"arq://127.0.0.1:6379/{BROKER_DB}?store={STORE_URL}", guards)
    done = accepted_id(send(guard, b'{"event": "ok"}'))
    dead = accepted_id(send(guard, b'{"fail": "always"}'))
    assert send(guard, b'{"event": "forged"}', tamper=True).status == 401
    drain(lambda: status_is(guard, done, "processed")() and status_is(guard, dead, "dead")())
    elsewhere = RedisStore(STORE_URL)  # as another machine sees it
    rows = {row.id: row for row in history_rows(elsewhere)}
    assert (rows[done].status, rows[dead].status) == ("processed", "dead")
    assert rows[dead].attempts == 4 and "gave up" in rows[dead].detail
    failed = history_rows(elsewhere, failed=True)
    assert sorted(row.status for row in failed) == ["dead", "rejected"]
    elsewhere.close()



E2E_APP = '''
import json, os
from webhook_guard import Guard, RetryPolicy
from webhook_guard.queues import broker, open_queue

guard = Guard(
    {secret!r},
    queue=open_queue(os.environ["WEBHOOK_GUARD_QUEUE"]),
    endpoint="e2e",
    worker="external",
    retry=RetryPolicy(max_attempts=3, base_seconds=0.2, cap_seconds=0.5),
)


@guard.on()
def handle(delivery):
    if delivery.attempt <= json.loads(delivery.body).get("fail", 0):
        raise RuntimeError("asked to fail")
    with open(os.environ["E2E_LOG"], "a") as log:
        log.write(json.dumps([delivery.id, delivery.attempt, delivery.body_sha256]) + "\\n")
'''


def test_the_documented_arq_worker_command_processes_and_retries(
    tmp_path: Path, guards: list[Guard]
) -> None:
    """`arq webhook_guard.queues.arq.WorkerSettings` with WEBHOOK_GUARD_QUEUE and
    WEBHOOK_GUARD_APP, as the module docstring says: runs deliveries, retries included."""
    url = f"arq://127.0.0.1:6379/{BROKER_DB}?store={STORE_URL}"
    (tmp_path / "e2e_app.py").write_text(E2E_APP.format(secret=SECRET))
    log = tmp_path / "processed.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "WEBHOOK_GUARD_QUEUE": url,
        "WEBHOOK_GUARD_APP": "e2e_app:guard",
        "E2E_LOG": str(log),
    }
    sender = Guard(SECRET, queue=from_url(url), endpoint="e2e", worker="external")
    guards.append(sender)
    ok, retried = b'{"n": 1}', b'{"fail": 1}'
    ids = [accepted_id(send(sender, body)) for body in (ok, retried)]
    with open(tmp_path / "worker.log", "ab") as out:
        worker = subprocess.Popen(
            [str(BIN / "arq"), "webhook_guard.queues.arq.WorkerSettings"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 2, 60), (
            tmp_path / "worker.log"
        ).read_text()[-3000:]
    finally:
        stop(worker)
    runs = sorted(tuple(json.loads(line)) for line in log.read_text().splitlines())
    assert runs == sorted(
        [(ids[0], 1, sha256(ok).hexdigest()), (ids[1], 2, sha256(retried).hexdigest())]
    )
    assert [a.outcome for a in store_of(sender).get(ids[1]).attempt_log] == ["failed", "processed"]
