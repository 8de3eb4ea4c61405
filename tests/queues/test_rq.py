"""RQ against real Redis, with RQ's own SimpleWorker (scheduler included) in this process:
bytes through the wire, dedupe, our retries and dead letters, replay, a broker that dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rq", reason="RQ is not installed: pip install 'webhook-guard[rq]'")

import redis
from rq import Queue, Retry, SimpleWorker
from rq.serializers import JSONSerializer

from tests.servers import BIN, ROOT, free_port, kill_hard, serve, stop, wait_until
from tests.services import require_redis
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard, Outcome
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.history import history_rows
from webhook_guard.queues import broker, open_queue
from webhook_guard.queues.rq import QUEUE_NAME, RQQueue, from_url
from webhook_guard.stores.redis import RedisStore
from webhook_guard.testing import sign_request

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

BROKER_DB, STORE_DB = 10, 11
BROKER_URL = f"redis://127.0.0.1:6379/{BROKER_DB}"
STORE_URL = f"redis://127.0.0.1:6379/{STORE_DB}"
SECRET = "rq-secret"
ENDPOINT = "rq-tests"
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


def make_guard(url: str) -> tuple[Guard, Handler]:
    guard = Guard(SECRET, queue=from_url(url), endpoint=ENDPOINT, worker="external", retry=POLICY)
    handler = Handler()
    guard.add_handler(handler)
    return guard, handler


def send(guard: Guard, body: bytes, *, msg_id: str | None = None, tamper: bool = False) -> Outcome:
    """A signed POST; the same ``msg_id`` twice is the sender retrying one delivery."""
    headers = sign_request("cloudaipilot", SECRET, body, msg_id=msg_id)
    return guard.receive("POST", "/webhook", headers, body + (b"!" if tamper else b""))


def accepted_id(outcome: Outcome) -> str:
    assert outcome.status == 200, outcome
    delivery_id: str = json.loads(outcome.body)["id"]
    return delivery_id


def store_of(guard: Guard) -> Any:
    assert isinstance(guard.queue, RQQueue)
    return guard.queue.store


def drain(until: Callable[[], bool], url: str = BROKER_URL, limit: float = 60.0) -> None:
    """Run RQ's SimpleWorker in burst mode, scheduler included, at least once and until
    ``until()`` holds (a burst worker moves only the retries already due, so it runs again)."""
    connection = redis.Redis.from_url(url)
    queue = Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    deadline = time.monotonic() + limit
    try:
        while True:
            worker = SimpleWorker([queue], connection=connection, serializer=JSONSerializer)
            worker.work(burst=True, with_scheduler=True)
            if until():
                return
            assert time.monotonic() < deadline, "the RQ worker did not get there in time"
            time.sleep(0.05)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        connection.close()


def status_is(guard: Guard, delivery_id: str, status: str) -> Callable[[], bool]:
    return lambda: getattr(store_of(guard).get(delivery_id), "status", None) == status


def test_a_worker_without_the_guard_keeps_the_delivery(
    store_query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that cannot find the endpoint's Guard fails the job and RQ runs it again
    later; once the Guard is there the delivery is processed, not dropped."""
    monkeypatch.setattr("webhook_guard.queues.rq.REDELIVER", Retry(max=5, interval=1))
    monkeypatch.delenv("WEBHOOK_GUARD_APP", raising=False)
    guard, handler = make_guard(f"rq://127.0.0.1:6379/{BROKER_DB}{store_query}")
    delivery_id = accepted_id(send(guard, b'{"n": 1}'))
    monkeypatch.delitem(broker._GUARDS, ENDPOINT)
    drain(lambda: True)  # one burst: the job fails, RQ schedules it again
    assert handler.calls == [] and store_of(guard).get(delivery_id).status == "queued"
    guard.queue.bind(guard)  # type: ignore[attr-defined]
    drain(status_is(guard, delivery_id, "processed"))
    assert handler.calls == [(delivery_id, 1, b'{"n": 1}')]


def test_open_queue_builds_an_rq_queue_without_connecting() -> None:
    """rq:// URLs reach RQQueue with their queue name and store; nothing connects yet."""
    queue = open_queue(f"rq://127.0.0.1:{free_port()}/3?queue=hooks&store={STORE_URL}")
    assert isinstance(queue, RQQueue) and queue.engine == "rq"
    assert queue.queue_name == "hooks" and isinstance(queue.store, RedisStore)
    assert queue.connection.connection_pool.connection_kwargs["socket_connect_timeout"] == 1.0


def test_round_trip_is_byte_exact_and_json_on_the_wire(store_query: str) -> None:
    """A signed non-UTF-8 body goes receive -> Redis -> RQ worker -> handler byte for byte;
    the job RQ stores is JSON, not pickle."""
    guard, handler = make_guard(f"rq://127.0.0.1:6379/{BROKER_DB}{store_query}")
    delivery_id = accepted_id(send(guard, BODY))
    job = redis.Redis(db=BROKER_DB).hgetall(f"rq:job:{delivery_id}-1")
    func, _, args, _ = json.loads(zlib.decompress(job[b"data"]))
    assert func == "webhook_guard.queues.rq.process" and args[0]["id"] == delivery_id
    drain(status_is(guard, delivery_id, "processed"))
    assert handler.calls == [(delivery_id, 1, BODY)]
    record = store_of(guard).get(delivery_id)
    assert record.body == BODY and [a.outcome for a in record.attempt_log] == ["processed"]


def test_a_duplicate_is_answered_but_not_processed_twice(store_query: str) -> None:
    """The same signed delivery twice: 200 duplicate naming the first id; the handler runs once."""
    guard, handler = make_guard(f"rq://127.0.0.1:6379/{BROKER_DB}{store_query}")
    first = accepted_id(send(guard, b'{"event": "x"}', msg_id="evt-1"))
    again = send(guard, b'{"event": "x"}', msg_id="evt-1")
    assert again.status == 200 and json.loads(again.body) == {"status": "duplicate", "id": first}
    drain(status_is(guard, first, "processed"))
    drain(lambda: True)  # one more burst: nothing else may be queued
    assert handler.calls == [(first, 1, b'{"event": "x"}')]
    assert len(store_of(guard).deliveries()) == 1


def test_fails_twice_then_succeeds_on_attempt_three_with_backoff(
    store_query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two failures, then success: each retry is published with a delay from the policy and
    does not start before that delay has passed."""
    guard, handler = make_guard(f"rq://127.0.0.1:6379/{BROKER_DB}{store_query}")
    queue = guard.queue
    assert isinstance(queue, RQQueue)
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
        assert attempt.started_at >= at + delay  # RQ's whole seconds never make a retry early


def test_always_failing_is_dead_with_a_traceback_and_replay_runs_it_again(
    store_query: str,
) -> None:
    """After max_attempts the delivery is dead in our store, traceback kept; replay reruns it."""
    guard, handler = make_guard(f"rq://127.0.0.1:6379/{BROKER_DB}{store_query}")
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


def test_a_dead_broker_answers_503_at_once_and_keeps_nothing(
    store_query: str, tmp_path: Path
) -> None:
    """A second redis-server is the broker. Killed: 503 + Retry-After without hanging, nothing
    reserved. Restarted on the same port: the sender's retry is accepted and processed."""
    port = free_port()
    command, log = _redis_command(port, tmp_path), tmp_path / "broker.log"
    with serve(command, dict(os.environ), port, log) as broker:
        guard, handler = make_guard(f"rq://127.0.0.1:{port}/0{store_query}")
        warm = accepted_id(send(guard, b'{"n": 0}'))  # the pool now holds a live connection
        kill_hard(broker)
        started = time.monotonic()
        down = send(guard, b'{"n": 1}', msg_id="evt-1")
        elapsed = time.monotonic() - started
    assert down.status == 503 and json.loads(down.body) == {"error": "queue_unavailable"}
    assert dict(down.headers).get("Retry-After") and elapsed < 5, elapsed
    assert [d.id for d in store_of(guard).deliveries()] == [warm]  # nothing kept for {"n": 1}
    with serve(command, dict(os.environ), port, log):
        retried = send(guard, b'{"n": 1}', msg_id="evt-1")
        assert json.loads(retried.body)["status"] == "ok"  # the dedupe key was released
        delivery_id = accepted_id(retried)
        drain(status_is(guard, delivery_id, "processed"), url=f"redis://127.0.0.1:{port}/0")
    assert handler.calls == [(delivery_id, 1, b'{"n": 1}')]


def test_history_reads_the_redis_store_and_the_cli_replays(tmp_path: Path) -> None:
    """With RedisStore, history_rows (and `webhook-guard history --store`) lists processed,
    dead and rejected; `replay --app` republishes through the Guard's RQ queue."""
    url = f"rq://127.0.0.1:6379/{BROKER_DB}?store={STORE_URL}"
    guard, handler = make_guard(url)
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

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run_options: dict[str, Any] = {"capture_output": True, "text": True, "env": env, "timeout": 60}
    cli = [sys.executable, "-m", "webhook_guard"]
    shown = subprocess.run(
        [*cli, "history", "--store", STORE_URL, "--failed", "--json"],
        **run_options,
        check=True,
    )
    assert {json.loads(line)["status"] for line in shown.stdout.splitlines()} == {
        "dead",
        "rejected",
    }
    show = subprocess.run(
        [*cli, "show", dead[:10], "--store", STORE_URL, "--json"],
        **run_options,
        check=True,
    )
    assert json.loads(show.stdout)["status"] == "dead"
    refused = subprocess.run(
        [*cli, "replay", dead, "--store", STORE_URL],
        **run_options,
    )
    assert refused.returncode == 2 and "--app" in refused.stderr

    (tmp_path / "rq_app.py").write_text(
        "from webhook_guard import Guard\n"
        "from webhook_guard.queues.rq import from_url\n"
        f"guard = Guard({SECRET!r}, queue=from_url({url!r}), endpoint={ENDPOINT!r},"
        " worker='external')\n"
    )
    replayed = subprocess.run(
        [*cli, "replay", dead, "--app", "rq_app:guard"],
        **run_options,
        cwd=tmp_path,
    )
    assert replayed.returncode == 0, replayed.stderr
    handler.always_fails = False
    drain(status_is(guard, dead, "processed"))
    assert handler.attempts(dead) == [1, 2, 3, 4, 1]


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


def test_the_documented_rq_worker_command_processes_and_retries(tmp_path: Path) -> None:
    """`rq worker --with-scheduler --serializer JSONSerializer webhook_guard`, as the module
    docstring says, with WEBHOOK_GUARD_APP: runs deliveries, retries included."""
    url = f"rq://127.0.0.1:6379/{BROKER_DB}?store={STORE_URL}"
    (tmp_path / "e2e_app.py").write_text(E2E_APP.format(secret=SECRET))
    log = tmp_path / "processed.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "WEBHOOK_GUARD_QUEUE": url,
        "WEBHOOK_GUARD_APP": "e2e_app:guard",
        "E2E_LOG": str(log),
    }
    command = [
        *(str(BIN / "rq"), "worker", "--with-scheduler"),
        *("--serializer", "rq.serializers.JSONSerializer", "--url", BROKER_URL, QUEUE_NAME),
    ]
    sender = Guard(SECRET, queue=from_url(url), endpoint="e2e", worker="external")
    ok, retried = b'{"n": 1}', b'{"fail": 1}'
    ids = [accepted_id(send(sender, body)) for body in (ok, retried)]
    with open(tmp_path / "worker.log", "ab") as out:
        worker = subprocess.Popen(
            command,
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
