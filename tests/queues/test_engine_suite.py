"""What every queue engine promises, run unchanged against each, with the engine's real worker.

Each test takes ``engine``, a harness from ``engines.py`` (Celery and Dramatiq on Redis and on
RabbitMQ, RQ; arq runs this same suite from ``test_arq.py``, in its own venv), started for that
test with each store in ``Harness.stores``: SQLite for all, the Redis store too for RQ and arq.
The round trip and the duplicate also run with the Redis store wherever the broker is Redis;
the broker failures, with SQLite only. Adding an engine means adding a harness, never a test.
What only one engine does (URL options, wire format, worker CLI) is tested in its own module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.queues.engines import (
    HARNESSES,
    NO_WAIT,
    POLICY,
    Handler,
    Harness,
    accepted_id,
    areceive,
    assert_unavailable,
    fail_always,
    logged,
    receive,
    running,
    signed,
    silent_listener,
    status_is,
    store_of,
    timed,
)
from tests.servers import free_port
from webhook_guard.core import registry
from webhook_guard.core.delivery import Delivery
from webhook_guard.exceptions import Retry
from webhook_guard.history import history_rows
from webhook_guard.queues import broker as broker_module
from webhook_guard.stores import open_store

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

# The harnesses this module runs; test_arq.py imports the suite and names ("arq",) instead.
ENGINES = (
    "celery+redis",
    "celery+amqp",
    "dramatiq+redis",
    "dramatiq+amqp",
    "rq",
    "procrastinate",
    "django-tasks",
)
BODY = b"\xff\xfe\x00 not UTF-8 \x80" + bytes(range(256)) + b'\r\n{"not": "json"'

Test = TypeVar("Test", bound=Callable[..., None])


def _everywhere(harness: type[Harness]) -> bool:
    return True


def each_engine(
    *, stores: str = "suite", where: Callable[[type[Harness]], bool] = _everywhere
) -> Callable[[Test], Test]:
    """Which harnesses a test runs on (``where``), and with which stores: ``"suite"`` (the
    harness's ``stores``, the default), ``"usable"`` (every store it can use) or ``"sqlite"``."""

    def mark(test: Test) -> Test:
        test.engine_cases = (stores, where)  # type: ignore[attr-defined]
        return test

    return mark


def _stores(harness: type[Harness], stores: str) -> tuple[str, ...]:
    return {"suite": harness.stores, "usable": harness.usable_stores, "sqlite": ("sqlite",)}[stores]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" not in metafunc.fixturenames:
        return
    stores, where = getattr(metafunc.function, "engine_cases", ("suite", _everywhere))
    cases = [
        pytest.param((name, store), id=f"{name}-{store}")
        for name in metafunc.module.ENGINES
        if where(HARNESSES[name])
        for store in _stores(HARNESSES[name], stores)
    ]
    metafunc.parametrize("engine", cases, indirect=True)


@pytest.fixture
def engine(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """The harness for this case, started; its queues closed and its broker emptied after."""
    name, store = request.param
    with running(name, store, tmp_path, monkeypatch) as harness:
        yield harness


@each_engine(stores="usable")
def test_a_delivery_round_trips_byte_exact(engine: Harness) -> None:
    """receive -> broker -> the engine's worker -> handler: the very bytes, once, headers kept
    but the signature (whoever reads a stored signature could replay the request)."""
    handler = Handler()
    guard = engine.guard(handler)
    delivery_id = accepted_id(receive(guard, BODY))
    with engine.worker(guard.queue) as worker:
        worker.until(status_is(guard, delivery_id, "processed"))
    assert handler.calls == [(delivery_id, 1, BODY)]
    assert handler.runs[0].header("content-type") == "application/json"
    assert handler.runs[0].header("x-cloudaipilot-signature") is None
    assert handler.runs[0].sender_id is not None  # the X-CloudAIPilot-Delivery, for display
    record = store_of(guard).get(delivery_id)
    assert record.body == BODY and record.body_sha256 == sha256(BODY).hexdigest()
    assert [a.outcome for a in record.attempt_log] == ["processed"]


@each_engine(stores="usable")
def test_a_duplicate_is_not_processed_twice(engine: Harness) -> None:
    """The sender's retry (async path) answers duplicate with the first id and never runs."""
    handler = Handler()
    guard = engine.guard(handler)
    body = b'{"event": "dup"}'
    headers = signed(body, msg_id="evt-1")
    first = accepted_id(receive(guard, body, headers))
    again = areceive(guard, body, headers)
    assert again.status == 200
    assert json.loads(again.body) == {"status": "duplicate", "id": first}
    with engine.worker(guard.queue) as worker:
        worker.until(status_is(guard, first, "processed"))
        # Published after the duplicate: once it ran, anything published before has too.
        barrier = accepted_id(receive(guard, b'{"event": "barrier"}'))
        worker.until(status_is(guard, barrier, "processed"))
    assert handler.calls == [(first, 1, body), (barrier, 1, b'{"event": "barrier"}')]
    assert sorted(d.id for d in store_of(guard).deliveries()) == sorted([first, barrier])


def test_a_failing_handler_is_retried_with_backoff(
    engine: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails, then asks for 0.4 s, then succeeds: each retry published with its delay, not early."""

    def flaky(delivery: Delivery) -> BaseException | None:
        if delivery.attempt == 1:
            return RuntimeError("first attempt fails")
        return Retry(after=0.4) if delivery.attempt == 2 else None

    handler = Handler(flaky)
    guard = engine.guard(handler)
    queue: Any = guard.queue
    published: list[tuple[int, float, float]] = []
    publish = queue.publish

    def spy(envelope: dict[str, Any], delay: float = 0.0) -> None:
        published.append((envelope["attempt"], delay, time.time()))
        publish(envelope, delay)

    monkeypatch.setattr(queue, "publish", spy)
    delivery_id = accepted_id(receive(guard, b'{"event": "flaky"}'))
    with engine.worker(queue) as worker:
        worker.until(status_is(guard, delivery_id, "processed"))
    assert handler.attempts(delivery_id) == [1, 2, 3]
    assert [attempt for attempt, _, _ in published] == [1, 2, 3] and published[0][1] == 0.0
    assert 0 < published[1][1] <= POLICY.cap_seconds and published[2][1] == 0.4
    log = store_of(guard).get(delivery_id).attempt_log
    assert [a.outcome for a in log] == ["failed", "failed", "processed"]
    assert "RuntimeError: first attempt fails" in (log[0].error or "")
    for (_, delay, at), attempt in zip(published[1:], log[1:], strict=True):
        assert attempt.started_at >= at + delay - engine.early_by, "the delay was honoured"
    assert log[2].started_at - log[1].started_at >= 0.35


def test_a_dead_letter_is_kept_and_replayed(engine: Harness) -> None:
    """Always failing: dead after max_attempts, traceback and reason kept; replay runs it again."""
    handler = Handler(fail_always)
    guard = engine.guard(handler)
    delivery_id = accepted_id(receive(guard, b'{"event": "doomed"}'))
    with engine.worker(guard.queue) as worker:
        worker.until(status_is(guard, delivery_id, "dead"))
        dead = store_of(guard).get(delivery_id)
        assert dead.attempts == 4 and handler.attempts(delivery_id) == [1, 2, 3, 4]
        assert [a.outcome for a in dead.attempt_log] == ["failed"] * 3 + ["dead"]
        assert "RuntimeError: asked to fail on attempt 4" in (dead.attempt_log[-1].traceback or "")
        assert "gave up after 4 attempts" in (dead.last_error or "")
        assert "asked to fail on attempt 4" in (dead.last_error or "")
        handler.fail = None
        assert guard.queue.replay([delivery_id]) == 1  # type: ignore[attr-defined]
        worker.until(status_is(guard, delivery_id, "processed"))
    assert handler.attempts(delivery_id) == [1, 2, 3, 4, 1]
    outcomes = [a.outcome for a in store_of(guard).get(delivery_id).attempt_log]
    assert outcomes == ["failed"] * 3 + ["dead", "processed"]


def test_a_worker_without_the_guard_keeps_the_delivery(
    engine: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker without the endpoint's Guard has it sent again, not dropped; then it runs once."""
    engine.redeliver_quickly(monkeypatch)
    monkeypatch.delenv("WEBHOOK_GUARD_APP", raising=False)
    handler = Handler()
    guard = engine.guard(handler)
    guard.close()  # a worker without the app: no Guard serves the endpoint
    misses: list[str] = []
    guard_for = broker_module.guard_for

    def counting_guard_for(endpoint: str) -> Any:
        try:
            return guard_for(endpoint)
        except Exception as error:
            misses.append(str(error))
            raise

    monkeypatch.setattr(broker_module, "guard_for", counting_guard_for)
    delivery_id = accepted_id(receive(guard, b'{"event": "orphan"}'))
    with logged("webhook_guard.queues") as messages, engine.worker(guard.queue) as worker:
        worker.until(lambda: len(misses) >= 3)  # sent again, twice
        assert handler.calls == [] and store_of(guard).get(delivery_id).status == "queued"
        engine.check_broker_holds(guard.queue, delivery_id)
        registry.attach(guard)
        worker.until(status_is(guard, delivery_id, "processed"))
    assert misses and all("no Guard for endpoint" in m for m in misses)
    assert all("no Guard for endpoint" in m for m in messages)
    if engine.logs_misses:  # RQ reports the failed job through its own logger instead
        assert len(messages) >= 3
    assert handler.calls == [(delivery_id, 1, b'{"event": "orphan"}')]


@pytest.mark.timeout(90)
@each_engine(where=lambda harness: harness.restartable)
def test_a_stopped_broker_answers_503_and_loses_nothing(engine: Harness) -> None:
    """Broker killed: 503 + Retry-After at once, nothing reserved; back on its port: 200, run."""
    handler = Handler()
    broker = engine.own_broker()
    with broker.running():
        guard = engine.guard(handler, port=broker.port)
        with engine.worker(guard.queue) as worker:
            before = accepted_id(receive(guard, b'{"n": "before"}'))
            worker.until(status_is(guard, before, "processed"))  # connections are live now
            broker.kill()
            during = b'{"n": "during"}'
            headers = signed(during, msg_id="evt-1")
            down, elapsed = timed(lambda: receive(guard, during, headers))
            adown, aelapsed = timed(lambda: areceive(guard, b'{"n": "async"}'))
            for outcome, seconds in ((down, elapsed), (adown, aelapsed)):
                assert_unavailable(outcome)
                assert seconds < 5, seconds
            assert [d.id for d in store_of(guard).deliveries()] == [before], "released"
            with broker.running():
                # The sender's retry: not a duplicate of a delivery that was never published.
                again = receive(guard, during, headers)
                assert json.loads(again.body)["status"] == "ok"
                after = accepted_id(again)
                worker.until(status_is(guard, after, "processed"))
    assert handler.calls == [(before, 1, b'{"n": "before"}'), (after, 1, during)]


@pytest.mark.timeout(30)
@each_engine(stores="sqlite")
def test_an_unreachable_broker_answers_503_and_releases(engine: Harness) -> None:
    """Nothing listens on the broker's port: 503 + Retry-After at once, no reservation left."""
    guard = engine.guard(Handler(), port=free_port())
    outcome, seconds = timed(lambda: receive(guard, b'{"n": 1}'))
    assert_unavailable(outcome)
    assert seconds < 5, seconds
    assert store_of(guard).deliveries() == []


@pytest.mark.timeout(30)
@each_engine(stores="sqlite")
def test_a_hung_broker_answers_503_without_hanging(engine: Harness) -> None:
    """A broker that accepts connections but never answers: 503 once the timeouts run out."""
    with silent_listener() as port:
        guard = engine.guard(Handler(), port=port)
        outcome = receive(guard, b'{"n": 1}')
    assert_unavailable(outcome)
    assert store_of(guard).deliveries() == []


def test_history_rows_list_processed_dead_and_rejected(engine: Harness) -> None:
    """history_rows, on the store as another process or machine opens it, lists every outcome."""
    handler = Handler(lambda d: fail_always(d) if b"always" in d.body else None)
    guard = engine.guard(handler, retry=NO_WAIT)
    done = accepted_id(receive(guard, b'{"event": "ok"}'))
    dead = accepted_id(receive(guard, b'{"fail": "always"}'))
    assert receive(guard, b'{"event": "forged"}', tamper=True).status == 401
    with engine.worker(guard.queue) as worker:
        worker.until(
            lambda: status_is(guard, done, "processed")() and status_is(guard, dead, "dead")()
        )
    elsewhere: Any = open_store(engine.store_url)
    try:
        rows = {row.id: row for row in history_rows(elsewhere)}
        assert (rows[done].status, rows[dead].status) == ("processed", "dead")
        assert rows[dead].attempts == 4 and "gave up" in rows[dead].detail
        failed = history_rows(elsewhere, failed=True)
        assert sorted(row.status for row in failed) == ["dead", "rejected"]
    finally:
        elsewhere.close()
