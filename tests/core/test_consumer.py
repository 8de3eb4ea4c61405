"""One consumer per store, dispatching by endpoint: each delivery runs only its own Guard's
handlers, whichever process or thread consumes the store (real SQLite files)."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.contract import SECRET, contract_guard
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.exceptions import ConfigurationError
from webhook_guard.testing import sign_request
from webhook_guard.worker import Worker

QUICK = RetryPolicy(max_attempts=3, base_seconds=0.01, cap_seconds=0.05)


def guard_on(path: Path, endpoint: str, **options: Any) -> Guard:
    """A contract Guard named ``endpoint`` on the SQLite file ``path``."""
    settings: dict[str, Any] = {"clock": time.time, "retry": QUICK, "endpoint": endpoint}
    settings.update(options)
    return contract_guard("cloudaipilot", str(path), **settings)


def send(guard: Guard, payload: dict[str, Any]) -> str:
    """Deliver ``payload`` to ``guard`` as a signed request; return the delivery id."""
    body = json.dumps(payload).encode()
    outcome = guard.receive("POST", "/x", sign_request("cloudaipilot", SECRET, body), body)
    assert outcome.status == 200, outcome.body
    return str(json.loads(outcome.body)["id"])


def status(guard: Guard, delivery_id: str) -> str:
    """The history's status of a delivery."""
    record = guard.queue.get(delivery_id)  # type: ignore[attr-defined]
    assert record is not None
    return str(record.status)


def recorder(calls: list[tuple[str, str]], name: str) -> Callable[[Delivery], None]:
    """A handler that records (its name, the delivery id)."""

    def handle(delivery: Delivery) -> None:
        calls.append((name, delivery.id))

    return handle


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_worker_claims_only_the_endpoints_it_serves(tmp_path: Path) -> None:
    """Worker(orders) runs orders' deliveries and leaves github's queued for whoever serves it."""
    db = tmp_path / "q.db"
    calls: list[tuple[str, str]] = []
    orders, github = guard_on(db, "orders"), guard_on(db, "github")
    orders.add_handler(recorder(calls, "orders"))
    github.add_handler(recorder(calls, "github"))
    first, second = send(orders, {"event": "a", "n": 1}), send(github, {"event": "a", "n": 2})
    assert Worker(orders).drain(timeout=10) == 1
    assert calls == [("orders", first)]
    assert status(github, second) == "queued"
    assert Worker(github).drain(timeout=10) == 1
    assert calls == [("orders", first), ("github", second)]


def test_one_worker_runs_each_delivery_with_its_own_guards_handlers(tmp_path: Path) -> None:
    """Worker(a, b): a retried delivery of one endpoint never reaches the other's handler."""
    db = tmp_path / "q.db"
    calls: list[tuple[str, str]] = []
    a, b = guard_on(db, "a"), guard_on(db, "b")
    failed_once: set[str] = set()

    @a.on()
    def flaky(delivery: Delivery) -> None:
        if delivery.id not in failed_once:
            failed_once.add(delivery.id)
            raise RuntimeError("first attempt fails")
        calls.append(("a", delivery.id))

    b.add_handler(recorder(calls, "b"))
    ids_a = [send(a, {"event": "x", "n": i}) for i in range(3)]
    ids_b = [send(b, {"event": "x", "n": 10 + i}) for i in range(3)]
    Worker(a, b).drain(timeout=10)
    assert sorted(calls) == sorted([("a", i) for i in ids_a] + [("b", i) for i in ids_b])


def test_the_embedded_consumer_is_one_per_store_and_dispatches_by_endpoint(
    tmp_path: Path,
) -> None:
    """Two embedded Guards on one file: one consumer thread, each delivery to its own Guard."""
    db = tmp_path / "q.db"
    calls: list[tuple[str, str]] = []
    a = guard_on(db, "a", worker="embedded")
    b = guard_on(db, "b", worker="embedded")
    a.add_handler(recorder(calls, "a"))
    b.add_handler(recorder(calls, "b"))
    try:
        one, two = send(a, {"event": "x", "n": 1}), send(b, {"event": "x", "n": 2})
        wait_for(lambda: len(calls) == 2)
        assert sorted(calls) == sorted([("a", one), ("b", two)])
        assert a.worker_running and b.worker_running
        threads = [t for t in threading.enumerate() if t.name == "webhook-guard-consumer"]
        assert len(threads) == 1, "one consumer per store, not one per Guard"
    finally:
        a.stop_worker()


def test_two_guards_with_one_endpoint_on_one_store_are_refused(tmp_path: Path) -> None:
    """The second live Guard named like the first on the same file is a configuration error."""
    first = guard_on(tmp_path / "q.db", "orders")
    with pytest.raises(ConfigurationError, match="two Guards with endpoint 'orders'"):
        guard_on(tmp_path / "q.db", "orders")
    guard_on(tmp_path / "other.db", "orders")  # another store: fine
    first.close()
    guard_on(tmp_path / "q.db", "orders")  # the name is free again


def test_a_guard_that_is_gone_frees_its_endpoint(tmp_path: Path) -> None:
    """Guards are held weakly: rebuilding one (a reload, a test) after the old one is gone works."""
    guard_on(tmp_path / "q.db", "orders")
    gc.collect()
    assert guard_on(tmp_path / "q.db", "orders").endpoint == "orders"


def test_a_worker_refuses_guards_of_different_stores(tmp_path: Path) -> None:
    """One worker consumes one store: Guards on two files need two workers."""
    a, b = guard_on(tmp_path / "a.db", "a"), guard_on(tmp_path / "b.db", "b")
    with pytest.raises(ConfigurationError, match="different stores"):
        Worker(a, b)


def test_an_event_no_handler_matches_is_ignored_logged_once_and_replayable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo'd @guard.on(...) leaves deliveries 'ignored' (not processed), warns once per event
    type, and a replay after adding the right handler processes them."""
    guard = guard_on(tmp_path / "q.db", "billing")
    ran: list[str] = []

    @guard.on("invoice.payd")
    def typo(delivery: Delivery) -> None:
        ran.append(delivery.id)

    with caplog.at_level(logging.WARNING, logger="webhook_guard.worker"):
        ids = [send(guard, {"event": "invoice.paid", "n": i}) for i in range(2)]
        Worker(guard).drain(timeout=10)
    assert [status(guard, i) for i in ids] == ["ignored", "ignored"]
    warnings = [r for r in caplog.records if "no handler matches event 'invoice.paid'" in r.message]
    assert len(warnings) == 1
    assert ran == []
    guard.add_handler(lambda delivery: ran.append(delivery.id), "invoice.paid")
    assert guard.queue.replay(statuses=("ignored",)) == 2  # type: ignore[attr-defined]
    Worker(guard).drain(timeout=10)
    assert sorted(ran) == sorted(ids)
    assert [status(guard, i) for i in ids] == ["processed", "processed"]


@pytest.mark.parametrize("signal", [SystemExit(3), KeyboardInterrupt(), BaseException("bare")])
def test_a_handler_raising_a_base_exception_ends_only_its_attempt(
    tmp_path: Path, signal: BaseException
) -> None:
    """SystemExit, KeyboardInterrupt or a bare BaseException in a handler is a failed attempt
    with a traceback, retried; the worker goes on to the next delivery."""
    guard = guard_on(tmp_path / "q.db", "hooks")
    raised: list[str] = []

    @guard.on()
    def handler(delivery: Delivery) -> None:
        if not raised:
            raised.append(delivery.id)
            raise signal

    delivery_id = send(guard, {"event": "x"})
    Worker(guard).drain(timeout=10)
    record = guard.queue.get(delivery_id)  # type: ignore[attr-defined]
    assert record.status == "processed"
    assert [a.outcome for a in record.attempt_log] == ["failed", "processed"]
    assert type(signal).__name__ in (record.attempt_log[0].traceback or "")


def test_a_dead_consumer_thread_is_replaced_by_the_next_request(tmp_path: Path) -> None:
    """The liveness check: when the consumer thread has died, the next request starts another."""
    guard = guard_on(tmp_path / "q.db", "hooks", worker="embedded")
    calls: list[tuple[str, str]] = []
    guard.add_handler(recorder(calls, "hooks"))
    try:
        send(guard, {"event": "x", "n": 1})
        wait_for(lambda: len(calls) == 1)
        guard.stop_worker()  # the thread ends, as a crash would end it
        assert not guard.worker_running
        send(guard, {"event": "x", "n": 2})
        assert guard.worker_running
        wait_for(lambda: len(calls) == 2)
    finally:
        guard.stop_worker()


def test_a_handler_past_its_timeout_is_retried_and_others_keep_flowing(tmp_path: Path) -> None:
    """A hung handler: its attempt is recorded as timed out and retried, the worker goes on to
    the next delivery on a new handler thread, and the retry (not hung) succeeds."""
    guard = guard_on(tmp_path / "q.db", "hooks", handler_timeout=0.3)
    release = threading.Event()
    ran: list[tuple[str, int]] = []

    @guard.on()
    def handler(delivery: Delivery) -> None:
        if delivery.json().get("hang") and delivery.attempt == 1:
            release.wait(30)  # hangs far past the timeout
        ran.append((delivery.json()["n"], delivery.attempt))

    try:
        hung = send(guard, {"event": "x", "n": "hung", "hang": True})
        other = send(guard, {"event": "x", "n": "other"})
        Worker(guard).drain(timeout=10)
        assert ("other", 1) in ran and ("hung", 2) in ran
        record = guard.queue.get(hung)  # type: ignore[attr-defined]
        assert record.status == "processed"
        assert [a.outcome for a in record.attempt_log] == ["failed", "processed"]
        assert "0.3 s timeout" in (record.attempt_log[0].error or "")
        assert status(guard, other) == "processed"
    finally:
        release.set()


def test_a_handler_timeout_of_its_own_wins_for_its_deliveries(tmp_path: Path) -> None:
    """@guard.on(..., timeout=) overrides handler_timeout; an attempt gets its handlers' longest."""
    guard = guard_on(tmp_path / "q.db", "hooks", handler_timeout=5)
    guard.add_handler(lambda d: None, "slow.*", timeout=120)
    guard.add_handler(lambda d: None, "slow.report")
    assert guard.attempt_timeout("slow.report") == 120
    assert guard.attempt_timeout("fast") == 5
    with pytest.raises(ConfigurationError, match="timeout must be a positive"):
        guard.add_handler(lambda d: None, timeout=0)


def test_a_failed_heartbeat_is_retried_so_the_lease_is_not_lost(tmp_path: Path) -> None:
    """Two heartbeats fail (a busy database): later ones still extend the lease, so a second
    worker cannot claim the delivery while its handler runs."""
    from webhook_guard.core.consumer import _Heartbeat
    from webhook_guard.exceptions import QueueUnavailable

    guard = guard_on(tmp_path / "q.db", "hooks")
    send(guard, {"event": "x"})
    queue = guard.queue
    claimed = queue.claim(0.6, ["hooks"])  # type: ignore[attr-defined]
    assert claimed is not None

    class BusyAtFirst:
        """The real queue, except that its first two heartbeats fail as a locked database
        would (a stand-in: holding SQLite's lock at exactly those moments is not repeatable)."""

        failures = 2

        def heartbeat(self, claim: Any, lease: float) -> bool:
            if self.failures:
                self.failures -= 1
                raise QueueUnavailable("database is locked")
            return bool(queue.heartbeat(claim, lease))  # type: ignore[attr-defined]

        def close(self) -> None:
            queue.close()

    beat = _Heartbeat(BusyAtFirst(), claimed, 0.6)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert queue.claim(0.6, ["hooks"]) is None, "the lease was lost"  # type: ignore[attr-defined]
            time.sleep(0.05)
    finally:
        beat.stop()
