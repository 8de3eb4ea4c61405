"""The worker against the real SQLite queue: retries, backoff, dead letters, classification."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.contract import SECRET, contract_guard
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.exceptions import PermanentFailure, Retry
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import sign_request
from webhook_guard.worker import Worker

QUICK = RetryPolicy(max_attempts=3, base_seconds=0.01, cap_seconds=0.05)


class _Response:
    """Stands in for a requests/httpx response: the duck-typed shape is what is under test."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class ApiError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"API answered {status}")
        self.response = _Response(status, headers)


def _guard(tmp_path: Path, **overrides: Any) -> Guard:
    options: dict[str, Any] = {"clock": time.time, "retry": QUICK, **overrides}
    return contract_guard("cloudaipilot", SQLiteQueue(tmp_path / "q.db"), **options)


def _send(guard: Guard, payload: dict[str, Any]) -> str:
    body = json.dumps(payload).encode()
    outcome = guard.receive("POST", "/webhook", sign_request("cloudaipilot", SECRET, body), body)
    assert outcome.status == 200
    return str(json.loads(outcome.body)["id"])


def _record(guard: Guard, delivery_id: str) -> Any:
    return guard.queue.get(delivery_id)  # type: ignore[attr-defined]


def test_failing_twice_then_succeeding_takes_three_attempts(tmp_path: Path) -> None:
    """Two failures are retried with backoff; the third attempt succeeds and is recorded."""
    guard = _guard(tmp_path)
    attempts: list[int] = []

    @guard.on()
    def flaky(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt <= 2:
            raise RuntimeError("not yet")

    delivery_id = _send(guard, {"event": "x"})
    Worker(guard).drain(timeout=10)
    record = _record(guard, delivery_id)
    assert attempts == [1, 2, 3]
    assert record.status == "processed" and record.attempts == 3
    assert [a.outcome for a in record.attempt_log] == ["failed", "failed", "processed"]
    assert "RuntimeError: not yet" in (record.attempt_log[0].traceback or "")


def test_always_failing_is_dead_after_max_attempts_with_its_traceback(tmp_path: Path) -> None:
    """After max_attempts the delivery is dead, with the last error and traceback kept."""
    guard = _guard(tmp_path)
    guard.add_handler(lambda d: 1 / 0)
    delivery_id = _send(guard, {"event": "x"})
    Worker(guard).drain(timeout=10)
    record = _record(guard, delivery_id)
    assert record.status == "dead" and record.attempts == QUICK.max_attempts
    assert "gave up after 3 attempts: ZeroDivisionError" in record.last_error
    assert "ZeroDivisionError" in (record.attempt_log[-1].traceback or "")


def test_dead_delivery_replays_with_a_fresh_budget(tmp_path: Path) -> None:
    """replay() queues a dead delivery again and new attempts are recorded after the old ones."""
    guard = _guard(tmp_path)
    healthy = threading.Event()
    guard.add_handler(lambda d: None if healthy.is_set() else 1 / 0)
    delivery_id = _send(guard, {"event": "x"})
    Worker(guard).drain(timeout=10)
    assert _record(guard, delivery_id).status == "dead"
    healthy.set()
    assert guard.queue.replay(statuses=("dead",)) == 1  # type: ignore[attr-defined]
    Worker(guard).drain(timeout=10)
    record = _record(guard, delivery_id)
    assert record.status == "processed"
    assert [a.outcome for a in record.attempt_log] == ["failed", "failed", "dead", "processed"]


@pytest.mark.parametrize("status", [401, 403, 404])
def test_api_auth_and_not_found_errors_are_dead_at_once(tmp_path: Path, status: int) -> None:
    """An API answering 401/403/404 answers the same again: dead on attempt 1, cause in words."""
    guard = _guard(tmp_path)

    def call_api(delivery: Delivery) -> None:
        raise ApiError(status)

    guard.add_handler(call_api)
    delivery_id = _send(guard, {"event": "x"})
    Worker(guard).drain(timeout=10)
    record = _record(guard, delivery_id)
    assert record.status == "dead" and record.attempts == 1
    assert f"({status})" in record.last_error and "replay" in record.last_error


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_api_busy_or_failing_is_retried(tmp_path: Path, status: int) -> None:
    """409/429/5xx from an API are retried until they succeed."""
    guard = _guard(tmp_path)

    def call_api(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise ApiError(status)

    guard.add_handler(call_api)
    delivery_id = _send(guard, {"event": "x"})
    Worker(guard).drain(timeout=10)
    assert _record(guard, delivery_id).attempts == 2


def test_retry_after_from_the_api_and_from_the_handler_sets_the_next_run(tmp_path: Path) -> None:
    """Retry-After (API) and Retry(after=) (handler) both push run_at that far out."""
    guard = _guard(tmp_path, retry=RetryPolicy(max_attempts=5, base_seconds=0.01, cap_seconds=3600))

    def call_api(delivery: Delivery) -> None:
        if delivery.json()["kind"] == "api":
            raise ApiError(429, {"Retry-After": "120"})
        raise Retry(after=300)

    guard.add_handler(call_api)
    api_id = _send(guard, {"event": "x", "kind": "api"})
    own_id = _send(guard, {"event": "x", "kind": "own"})
    before = time.time()
    worker = Worker(guard)
    assert worker.run_once() and worker.run_once()
    assert not worker.run_once(), "neither is due again yet"
    assert _record(guard, api_id).run_at >= before + 120
    assert _record(guard, own_id).run_at >= before + 300
    assert _record(guard, own_id).status == "retrying"


def test_permanent_failure_is_dead_at_once(tmp_path: Path) -> None:
    """A handler raising PermanentFailure is not retried."""
    guard = _guard(tmp_path)

    def refuse(delivery: Delivery) -> None:
        raise PermanentFailure("unknown customer")

    guard.add_handler(refuse)
    delivery_id = _send(guard, {"event": "x"})
    Worker(guard).drain(timeout=10)
    record = _record(guard, delivery_id)
    assert (
        record.status == "dead" and record.attempts == 1 and "unknown customer" in record.last_error
    )


def test_handlers_are_routed_by_event_type(tmp_path: Path) -> None:
    """Exact names, glob patterns and the catch-all each get the events they asked for."""
    guard = _guard(tmp_path)
    seen: dict[str, list[str]] = {"paid": [], "invoice": [], "all": []}
    guard.on("invoice.paid")(lambda d: seen["paid"].append(d.event_type))
    guard.on("invoice.*")(lambda d: seen["invoice"].append(d.event_type))
    guard.on()(lambda d: seen["all"].append(d.event_type))
    for event in ("invoice.paid", "invoice.voided", "charge.failed"):
        _send(guard, {"event": event})
    Worker(guard).drain(timeout=10)
    assert seen["paid"] == ["invoice.paid"]
    assert sorted(seen["invoice"]) == ["invoice.paid", "invoice.voided"]
    assert sorted(seen["all"]) == ["charge.failed", "invoice.paid", "invoice.voided"]


def test_stale_worker_cannot_ack_after_losing_its_lease(tmp_path: Path) -> None:
    """The fencing token: a worker whose lease expired and was re-claimed acks nothing."""
    guard = _guard(tmp_path)
    delivery_id = _send(guard, {"event": "x"})
    queue: SQLiteQueue = guard.queue  # type: ignore[assignment]
    stale = queue.claim(lease_seconds=0.01)
    assert stale is not None
    assert wait_for_lease_expiry(queue) is not None
    fresh = queue.claim(lease_seconds=60)
    assert fresh is not None and fresh.delivery.id == delivery_id and fresh.delivery.attempt == 2
    assert not queue.ack(stale)
    assert queue.ack(fresh)
    assert _record(guard, delivery_id).status == "processed"


def wait_for_lease_expiry(queue: SQLiteQueue) -> float | None:
    """Poll until the only delivery is due again (its lease expired)."""
    for _ in range(500):
        due = queue.next_due_in()
        if due == 0:
            return due
        time.sleep(0.01)
    return None


def test_embedded_worker_starts_on_first_delivery(tmp_path: Path) -> None:
    """worker="embedded": the first accepted delivery starts this process's worker thread."""
    guard = _guard(tmp_path, worker="embedded")
    done = threading.Event()
    guard.add_handler(lambda d: done.set())
    _send(guard, {"event": "x"})
    try:
        assert done.wait(30)
    finally:
        guard.stop_worker()
