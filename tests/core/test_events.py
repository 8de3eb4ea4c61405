"""The observer registry: add/remove, notify order, failures isolated, and the Guard's reports."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from webhook_guard.core.delivery import Delivery
from webhook_guard.core.events import (
    AttemptStatus,
    BaseObserver,
    add_observer,
    notify,
    observers,
    remove_observer,
)
from webhook_guard.core.guard import Guard
from webhook_guard.core.processing import run_attempt
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.exceptions import PayloadTooLarge, QueueUnavailable
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import sign_request

SECRET = "events-secret-Q7"
BODY = b'{"event": "invoice.paid"}'


class Recorder(BaseObserver):
    """Keeps every report as a tuple, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def request_received(self, endpoint: str) -> None:
        self.seen.append(("received", endpoint))

    def request_rejected(self, endpoint: str, reason: str) -> None:
        self.seen.append(("rejected", endpoint, reason))

    def delivery_accepted(self, endpoint: str, duplicate: bool, seconds: float) -> None:
        assert 0 <= seconds < 10
        self.seen.append(("accepted", endpoint, duplicate))

    def attempt_finished(self, endpoint: str, status: AttemptStatus) -> None:
        self.seen.append(("attempt", endpoint, status))

    def queue_unavailable(self, endpoint: str) -> None:
        self.seen.append(("unavailable", endpoint))


class Exploding(BaseObserver):
    def request_received(self, endpoint: str) -> None:
        raise RuntimeError("observer bug")


pytestmark = pytest.mark.usefixtures("no_observers")


def _guard(tmp_path: Path, queue: SQLiteQueue | None = None) -> Guard:
    return Guard(
        SECRET,
        queue=queue or SQLiteQueue(tmp_path / "q.db"),
        endpoint="billing",
        worker="external",
    )


def test_add_is_idempotent_and_remove_forgets() -> None:
    """Adding one observer twice registers it once; removing it (or a stranger) is safe."""
    recorder = Recorder()
    add_observer(recorder)
    add_observer(recorder)
    assert observers() == (recorder,)
    remove_observer(recorder)
    remove_observer(recorder)
    remove_observer(Recorder())
    assert observers() == ()


def test_notify_calls_every_observer_in_order() -> None:
    """Observers hear each event in the order they were added."""
    calls: list[str] = []

    class Named(BaseObserver):
        def __init__(self, name: str) -> None:
            self.name = name

        def request_received(self, endpoint: str) -> None:
            calls.append(f"{self.name}:{endpoint}")

    add_observer(Named("a"))
    add_observer(Named("b"))
    notify(lambda observer: observer.request_received("x"))
    assert calls == ["a:x", "b:x"]


def test_a_failing_observer_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """notify never raises: the exception is logged with its traceback, the next observer runs."""
    recorder = Recorder()
    add_observer(Exploding())
    add_observer(recorder)
    with caplog.at_level(logging.ERROR, logger="webhook_guard"):
        notify(lambda observer: observer.request_received("x"))
    assert recorder.seen == [("received", "x")]
    [record] = [r for r in caplog.records if r.name == "webhook_guard.events"]
    assert "observer" in record.getMessage() and record.exc_info is not None


def test_notify_without_observers_does_nothing() -> None:
    """With nothing registered the event callable is never even called."""
    notify(lambda observer: pytest.fail("called without observers"))


def test_the_guard_reports_received_accepted_duplicate_and_rejected(tmp_path: Path) -> None:
    """receive() reports each request once, then exactly one outcome, labelled by endpoint."""
    recorder = Recorder()
    add_observer(recorder)
    guard = _guard(tmp_path)
    headers = sign_request("cloudaipilot", SECRET, BODY)
    assert guard.receive("POST", "/webhook", headers, BODY).status == 200
    assert guard.receive("POST", "/webhook", headers, BODY).status == 200
    assert guard.receive("POST", "/webhook", {}, BODY).status == 400
    assert guard.reject(PayloadTooLarge("too big"), "POST", "/webhook").status == 413
    assert recorder.seen == [
        ("received", "billing"),
        ("accepted", "billing", False),
        ("received", "billing"),
        ("accepted", "billing", True),
        ("received", "billing"),
        ("rejected", "billing", "missing_signature"),
        ("received", "billing"),
        ("rejected", "billing", "payload_too_large"),
    ]


def test_the_async_paths_report_like_the_sync_ones(tmp_path: Path) -> None:
    """areceive() and areject() make the same reports as receive() and reject()."""
    recorder = Recorder()
    add_observer(recorder)
    guard = _guard(tmp_path)
    headers = sign_request("cloudaipilot", SECRET, BODY)

    async def scenario() -> list[int]:
        ok = await guard.areceive("POST", "/webhook", headers, BODY)
        bad = await guard.areceive("GET", "/webhook", {}, b"")
        big = await guard.areject(PayloadTooLarge("too big"), "POST", "/webhook")
        return [ok.status, bad.status, big.status]

    assert asyncio.run(scenario()) == [200, 405, 413]
    assert recorder.seen == [
        ("received", "billing"),
        ("accepted", "billing", False),
        ("received", "billing"),
        ("rejected", "billing", "method_not_allowed"),
        ("received", "billing"),
        ("rejected", "billing", "payload_too_large"),
    ]


def test_a_queue_failure_is_reported_as_unavailable(tmp_path: Path) -> None:
    """An enqueue that fails answers 503 and reports queue_unavailable, not accepted."""

    class DownQueue(SQLiteQueue):
        def enqueue(self, delivery: object) -> object:  # type: ignore[override]
            raise QueueUnavailable("disk full")

    recorder = Recorder()
    add_observer(recorder)
    guard = _guard(tmp_path, DownQueue(tmp_path / "q.db"))
    headers = sign_request("cloudaipilot", SECRET, BODY)
    assert guard.receive("POST", "/webhook", headers, BODY).status == 503
    assert recorder.seen == [("received", "billing"), ("unavailable", "billing")]


def test_a_failing_observer_never_fails_a_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer raising on the request path still lets the sender get its 200."""
    add_observer(Exploding())
    guard = _guard(tmp_path)
    headers = sign_request("cloudaipilot", SECRET, BODY)
    with caplog.at_level(logging.ERROR, logger="webhook_guard"):
        assert guard.receive("POST", "/webhook", headers, BODY).status == 200
    assert any("observer" in r.getMessage() for r in caplog.records)


def test_the_core_does_not_import_prometheus_client() -> None:
    """Importing webhook_guard (and its events module) never pulls in a metrics library."""
    code = (
        "import sys, webhook_guard, webhook_guard.core.events; "
        "sys.exit('prometheus_client' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_attempt_reports_processed_retrying_and_dead(tmp_path: Path) -> None:
    """Every attempt's outcome is reported by run_attempt, the step every engine shares."""
    recorder = Recorder()
    guard = Guard(
        SECRET,
        queue=SQLiteQueue(tmp_path / "q.db"),
        endpoint="billing",
        worker="external",
        retry=RetryPolicy(max_attempts=2, base_seconds=0),
    )
    failures = iter([RuntimeError("first"), RuntimeError("second")])

    @guard.on()
    def handler(delivery: Delivery) -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    delivery = guard.admit("POST", sign_request("cloudaipilot", SECRET, BODY), BODY)
    add_observer(recorder)
    statuses = [
        run_attempt(guard, replace(delivery, attempt=attempt)).status for attempt in (1, 2, 3)
    ]
    assert statuses == ["retrying", "dead", "dead"]  # 3 > max_attempts: died during each
    assert [event[2] for event in recorder.seen] == statuses
    failures = iter([])
    assert run_attempt(guard, delivery).status == "processed"
    assert recorder.seen[-1] == ("attempt", "billing", "processed")
