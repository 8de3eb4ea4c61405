"""Metrics and rejection logs: Prometheus series from a real Guard, SQLite queue and Worker, and
structured rejection log records that carry the reason and hint but never a secret."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from webhook_guard.core.body import read_wsgi_body
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.events import BaseObserver, add_observer
from webhook_guard.core.guard import Guard
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable, Rejected
from webhook_guard.queues.sqlite import STATUSES, SQLiteQueue
from webhook_guard.testing import FrozenClock, sign_request
from webhook_guard.worker import Worker

try:
    from prometheus_client import CollectorRegistry, generate_latest

    from webhook_guard.metrics import PrometheusObserver, install
except ImportError:  # the metrics extra is not installed: only the log tests run
    HAVE_PROMETHEUS = False
else:
    HAVE_PROMETHEUS = True

needs_prometheus = pytest.mark.skipif(
    not HAVE_PROMETHEUS,
    reason="prometheus_client is not installed (pip install 'webhook-guard[metrics]')",
)

SECRET = "METRICS-CANARY-s3cr3t-91d4"
QUICK = RetryPolicy(max_attempts=3, base_seconds=0.01, cap_seconds=0.05)
CAP = 1024
ZEROS = "00" * 32  # well-formed hex, matches nothing
LOG_FIELDS = (
    "webhook_guard_event",
    "reason",
    "hint",
    "endpoint",
    "method",
    "path",
    "remote_addr",
    "body_size",
)


pytestmark = pytest.mark.usefixtures("no_observers")


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry, so no test sees another's counts."""
    return CollectorRegistry()


def _guard(tmp_path: Path, queue: SQLiteQueue | None = None, **options: Any) -> Guard:
    settings: dict[str, Any] = {
        "queue": queue or SQLiteQueue(tmp_path / "q.db"),
        "endpoint": "shop",
        "worker": "external",
        "retry": QUICK,
        "max_body_bytes": CAP,
        **options,
    }
    return Guard(SECRET, **settings)


def _post(guard: Guard, body: bytes, headers: dict[str, str] | None = None) -> int:
    signed = sign_request(guard.scheme, SECRET, body) if headers is None else headers
    return guard.receive("POST", "/webhook", signed, body, remote_addr="203.0.113.9").status


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"endpoint": "shop", **labels})


def _total(registry: CollectorRegistry, name: str) -> float:
    """The sum of every sample called ``name``, whatever its labels."""
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    )


def read_body_error(body: bytes, declared: int) -> Rejected:
    """The Rejected an adapter gets from the real WSGI body reader (here: over the cap)."""
    environ = {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(declared)}
    try:
        read_wsgi_body(environ, CAP)
    except Rejected as error:
        return error
    raise AssertionError("the body reader accepted the request")


@needs_prometheus
def test_counters_after_a_realistic_mix_of_requests_and_attempts(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """Valid, duplicate, tampered, unsigned, oversized, flaky and doomed give exact counts."""
    metrics = install(registry)
    guard = _guard(tmp_path)
    metrics.track_queue(guard.queue)  # type: ignore[arg-type]

    @guard.on("flaky")
    def flaky(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise RuntimeError("first attempt fails")

    @guard.on("doomed")
    def doomed(delivery: Delivery) -> None:
        raise RuntimeError("always fails")

    ok = b'{"event": "ok"}'
    signed = sign_request(guard.scheme, SECRET, ok)
    assert _post(guard, ok, signed) == 200
    assert _post(guard, ok, signed) == 200  # the sender's retry, same delivery id: a duplicate
    assert _post(guard, ok + b" ", sign_request(guard.scheme, SECRET, ok)) == 401  # tampered
    assert _post(guard, ok, {}) == 400  # unsigned
    assert _post(guard, b"x" * (CAP + 1)) == 413  # oversized, seen by the core
    assert guard.reject(read_body_error(b"x" * 5, CAP + 1), "POST", "/webhook").status == 413
    assert _post(guard, b'{"event": "flaky"}') == 200
    assert _post(guard, b'{"event": "doomed"}') == 200
    Worker(guard).drain(timeout=10)

    assert _value(registry, "webhook_guard_requests_received_total", endpoint="shop") == 8
    rejected = "webhook_guard_requests_rejected_total"
    assert _value(registry, rejected, reason="signature_mismatch") == 1
    assert _value(registry, rejected, reason="missing_signature") == 1
    assert _value(registry, rejected, reason="payload_too_large") == 2
    accepted = "webhook_guard_deliveries_accepted_total"
    assert _value(registry, accepted, duplicate="false") == 3
    assert _value(registry, accepted, duplicate="true") == 1
    attempts = "webhook_guard_attempts_total"
    assert _value(registry, attempts, status="processed") == 1  # flaky's 2nd attempt
    assert _value(registry, attempts, status="ignored") == 1  # ok: no handler for its event
    assert _value(registry, attempts, status="retrying") == 3  # flaky once, doomed twice
    assert _value(registry, attempts, status="dead") == 1  # doomed's 3rd attempt
    assert _value(registry, "webhook_guard_queue_unavailable_total", endpoint="shop") is None
    assert _value(registry, "webhook_guard_ack_seconds_count", endpoint="shop") == 3 + 1
    # Every request ends one way: rejected, accepted (new or duplicate) or unavailable.
    assert _total(registry, rejected) == 4 and _total(registry, accepted) == 4
    assert _total(registry, "webhook_guard_requests_received_total") == 4 + 4
    assert 0 < (_value(registry, "webhook_guard_ack_seconds_sum", endpoint="shop") or 0) < 10

    counts = guard.queue.counts()  # type: ignore[attr-defined]
    assert counts == {"processed": 1, "ignored": 1, "dead": 1}
    for status in STATUSES:
        labels = {"queue": str(tmp_path / "q.db"), "status": status}
        assert registry.get_sample_value("webhook_guard_queue_depth", labels) == counts.get(
            status, 0
        )


@needs_prometheus
def test_queue_depth_follows_the_queue_between_scrapes(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """The gauge is read at scrape time: queued before the worker runs, processed after."""
    metrics = install(registry)
    guard = _guard(tmp_path)
    guard.add_handler(lambda delivery: None)
    metrics.track_queue(guard.queue, name="main")  # type: ignore[arg-type]
    depth = "webhook_guard_queue_depth"
    assert registry.get_sample_value(depth, {"queue": "main", "status": "queued"}) == 0
    assert _post(guard, b'{"event": "a"}') == 200
    assert _post(guard, b'{"event": "b"}') == 200
    assert registry.get_sample_value(depth, {"queue": "main", "status": "queued"}) == 2
    Worker(guard).drain(timeout=10)
    assert registry.get_sample_value(depth, {"queue": "main", "status": "queued"}) == 0
    assert registry.get_sample_value(depth, {"queue": "main", "status": "processed"}) == 2


@needs_prometheus
def test_a_failing_queue_depth_read_is_logged_and_the_scrape_goes_on(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """counts() raising leaves that queue out of the scrape; the counters are still exported."""

    class Broken:
        def counts(self) -> dict[str, int]:
            raise QueueUnavailable("database is locked")

    metrics = install(registry)
    metrics.track_queue(Broken())
    guard = _guard(tmp_path)
    assert _post(guard, b'{"event": "a"}') == 200
    with caplog.at_level(logging.WARNING, logger="webhook_guard"):
        scrape = generate_latest(registry).decode()
    assert 'webhook_guard_requests_received_total{endpoint="shop"} 1.0' in scrape
    assert "webhook_guard_queue_depth{" not in scrape
    assert any(
        r.name == "webhook_guard.metrics" and "Broken" in r.getMessage() and r.exc_info
        for r in caplog.records
    )


@needs_prometheus
def test_a_queue_that_cannot_take_a_delivery_counts_as_unavailable(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """A 503 increments queue_unavailable_total, not accepted, and observes no ack latency."""

    class DownQueue(SQLiteQueue):
        def enqueue(self, delivery: object) -> object:  # type: ignore[override]
            raise QueueUnavailable("disk full")

    install(registry)
    guard = _guard(tmp_path, DownQueue(tmp_path / "q.db"))
    assert _post(guard, b'{"event": "a"}') == 503
    assert _value(registry, "webhook_guard_queue_unavailable_total", endpoint="shop") == 1
    assert _value(registry, "webhook_guard_deliveries_accepted_total", duplicate="false") is None
    assert _value(registry, "webhook_guard_ack_seconds_count", endpoint="shop") is None


@needs_prometheus
def test_an_observer_that_raises_does_not_break_a_request(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken observer is logged; the sender still gets 200 and the metrics still count."""

    class Broken(BaseObserver):
        def request_received(self, endpoint: str) -> None:
            raise RuntimeError("statsd is down")

        def delivery_accepted(self, endpoint: str, duplicate: bool, seconds: float) -> None:
            raise RuntimeError("statsd is down")

    add_observer(Broken())
    install(registry)
    guard = _guard(tmp_path)
    with caplog.at_level(logging.ERROR, logger="webhook_guard"):
        assert _post(guard, b'{"event": "a"}') == 200
    assert _value(registry, "webhook_guard_requests_received_total", endpoint="shop") == 1
    assert _value(registry, "webhook_guard_deliveries_accepted_total", duplicate="false") == 1
    failures = [r for r in caplog.records if "observer" in r.getMessage()]
    assert len(failures) == 2 and all("statsd is down" in str(r.exc_info) for r in failures)


@needs_prometheus
def test_namespace_and_a_second_queue_name(tmp_path: Path, registry: CollectorRegistry) -> None:
    """The namespace prefixes every series; two queues under one name are refused."""
    observer = PrometheusObserver(registry, namespace="hooks")
    add_observer(observer)
    guard = _guard(tmp_path)
    observer.track_queue(guard.queue)  # type: ignore[arg-type]
    observer.track_queue(guard.queue)  # the same queue again: harmless
    with pytest.raises(ConfigurationError, match="already tracked"):
        observer.track_queue(SQLiteQueue(tmp_path / "q.db"))
    assert _post(guard, b'{"event": "a"}') == 200
    assert _value(registry, "hooks_requests_received_total", endpoint="shop") == 1
    assert (
        registry.get_sample_value(
            "hooks_queue_depth", {"queue": str(tmp_path / "q.db"), "status": "queued"}
        )
        == 1
    )


@needs_prometheus
def test_flask_app_exposes_metrics_with_make_wsgi_app(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """The docs' Flask recipe: /webhook through the adapter, /metrics via make_wsgi_app."""
    pytest.importorskip("flask")
    import flask
    from prometheus_client import make_wsgi_app
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from webhook_guard.adapters.flask import webhook

    metrics = install(registry)
    guard = _guard(tmp_path)
    metrics.track_queue(guard.queue)  # type: ignore[arg-type]
    app = flask.Flask(__name__)

    @app.route("/webhook")
    @webhook(guard)
    def on_delivery(delivery: Delivery) -> None:
        pass

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/metrics": make_wsgi_app(registry)}
    )
    client = app.test_client()
    body = b'{"event": "a"}'
    assert client.post("/webhook", data=body, headers=sign_request(guard.scheme, SECRET, body))
    assert client.post("/webhook", data=body).status_code == 400
    scrape = client.get("/metrics").get_data(as_text=True)
    assert 'webhook_guard_requests_received_total{endpoint="shop"} 2.0' in scrape
    assert (
        'webhook_guard_requests_rejected_total{endpoint="shop",reason="missing_signature"} 1.0'
        in scrape
    )
    assert "webhook_guard_ack_seconds_bucket{" in scrape
    assert "webhook_guard_queue_depth{" in scrape


# -- structured rejection logs -------------------------------------------------------------


def _every_rejection(tmp_path: Path) -> tuple[list[int], Guard, Guard]:
    """Provoke each Rejected kind through the real code path that raises it, with the secret
    everywhere a careless sender might put it (header values, body, Authorization)."""
    clock = FrozenClock()
    guard = _guard(tmp_path, clock=clock)
    stripe = _guard(tmp_path, scheme="stripe", endpoint="stripe", clock=clock)
    body = json.dumps({"event": "x", "token": SECRET}).encode()
    careless = {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET}
    now = int(clock())
    signature = "X-CloudAIPilot-Signature"
    statuses = [
        _post(guard, body, careless),  # missing_signature
        _post(guard, body, {**careless, signature: SECRET}),  # malformed: the secret, pasted
        _post(guard, body, {**careless, signature: f"sha256={SECRET}"}),  # malformed: not hex
        _post(guard, body + b" ", {**careless, **sign_request(guard.scheme, SECRET, body)}),
        guard.receive("GET", "/webhook", careless, body).status,  # method_not_allowed
        _post(guard, body + b"x" * CAP, careless),  # payload_too_large
        _post(stripe, body, {**careless, "Stripe-Signature": f"v1={ZEROS}"}),  # no t=
        _post(stripe, body, {**careless, "Stripe-Signature": f"t={SECRET},v1={ZEROS}"}),
        _post(stripe, body, sign_request("stripe", SECRET, body, timestamp=now - 3600)),
    ]
    wsgi_failures = [
        {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": SECRET},  # invalid_content_length
        {"wsgi.input": io.BytesIO(body[:3]), "CONTENT_LENGTH": str(len(body))},  # incomplete
        {"wsgi.input": io.BytesIO(body), "HTTP_TRANSFER_ENCODING": "chunked"},  # length_required
    ]
    deadlines: list[float | None] = [None] * len(wsgi_failures)
    wsgi_failures.append({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
    deadlines.append(time.monotonic() - 1)  # request_timeout: the deadline already passed
    for environ, deadline in zip(wsgi_failures, deadlines, strict=True):
        try:
            read_wsgi_body(environ, CAP, deadline)
        except Rejected as error:
            statuses.append(guard.reject(error, "POST", "/webhook", body=body).status)
    return statuses, guard, stripe


def test_every_rejection_logs_structured_fields_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each reason code is logged once with its structured fields; no secret or digest anywhere."""
    with caplog.at_level(logging.DEBUG, logger="webhook_guard"):
        statuses, guard, _ = _every_rejection(tmp_path)
    assert all(400 <= status < 500 for status in statuses), statuses
    records = [r for r in caplog.records if getattr(r, "webhook_guard_event", None)]
    every_kind = {cls.code for cls in _subclasses(Rejected)}
    assert {r.__dict__["reason"] for r in records} == every_kind
    assert len(records) == len(statuses)
    body = json.dumps({"event": "x", "token": SECRET}).encode()
    digest = sign_request(guard.scheme, SECRET, body)["X-CloudAIPilot-Signature"].split("=")[1]
    for record in caplog.records:
        dump = repr(record.__dict__) + record.getMessage()
        assert SECRET not in dump, f"secret in {record.__dict__}"
        assert digest not in dump, f"expected digest in {record.__dict__}"
    for record in records:
        fields = {name: record.__dict__[name] for name in LOG_FIELDS}
        assert fields["webhook_guard_event"] == "rejected"
        assert fields["endpoint"] in ("shop", "stripe") and fields["path"] == "/webhook"
        assert fields["hint"] and fields["reason"] in record.getMessage()  # human text kept
        assert record.levelno == logging.WARNING and record.name == "webhook_guard"
        json.dumps(fields)  # a JSON formatter can emit them as they are


def test_rejection_log_fields_for_one_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tampered request's record carries exactly what an operator needs to find it."""
    guard = _guard(tmp_path)
    body = b'{"event": "a"}'
    with caplog.at_level(logging.WARNING, logger="webhook_guard"):
        assert _post(guard, body + b" ", sign_request(guard.scheme, SECRET, body)) == 401
    [record] = [r for r in caplog.records if getattr(r, "webhook_guard_event", None)]
    assert {name: record.__dict__[name] for name in LOG_FIELDS} == {
        "webhook_guard_event": "rejected",
        "reason": "signature_mismatch",
        "hint": record.__dict__["hint"],
        "endpoint": "shop",
        "method": "POST",
        "path": "/webhook",
        "remote_addr": "203.0.113.9",
        "body_size": len(body) + 1,
    }
    assert "none of the 1 configured secret(s)" in record.__dict__["hint"]
    assert record.getMessage().startswith("webhook rejected: POST /webhook from 203.0.113.9")


def _subclasses(cls: type[Rejected]) -> list[type[Rejected]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_rejection_metrics_and_logs_agree(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without prometheus_client too, an observer sees one rejection per logged rejection."""
    seen: list[str] = []

    class Reasons(BaseObserver):
        def request_rejected(self, endpoint: str, reason: str) -> None:
            seen.append(reason)

    add_observer(Reasons())
    with caplog.at_level(logging.WARNING, logger="webhook_guard"):
        _every_rejection(tmp_path)
    logged = [r.__dict__["reason"] for r in caplog.records if getattr(r, "webhook_guard_event", 0)]
    assert seen == logged and len(seen) == 13


STORE_ERRORS = "webhook_guard_store_errors_total"


@needs_prometheus
def test_store_errors_of_a_consumer_are_counted(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """The consumer's store failing (its file replaced by a directory) is logged, counted in
    webhook_guard_store_errors_total{operation="consume"}, and does not end the consumer."""
    import shutil
    import threading

    install(registry)
    guard = _guard(tmp_path)
    assert _post(guard, b'{"event": "a"}') == 200
    worker = Worker(guard)
    assert worker.run_once()  # the consumer's connection is open
    db = tmp_path / "q.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.mkdir()
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        for _ in range(100):
            if registry.get_sample_value(STORE_ERRORS, {"operation": "consume"}):
                break
            stop.wait(0.05)
        assert thread.is_alive(), "a store error ended the consumer"
    finally:
        stop.set()
        thread.join(15)
        shutil.rmtree(db, ignore_errors=True)
    assert (registry.get_sample_value(STORE_ERRORS, {"operation": "consume"}) or 0) >= 1
