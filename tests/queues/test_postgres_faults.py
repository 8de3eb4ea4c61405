"""PostgreSQL going away under a Guard, on a cluster of the test's own (the shared server is
never stopped): 503 + Retry-After at once while it is down, recovery without restarting
anything, and every acknowledged delivery processed exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.contract import SECRET, contract_guard
from tests.servers import free_port
from tests.services import PostgresServer, postgres_server
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.services


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with postgres_server(free_port()) as running:
        yield running


def send(guard: Guard, n: int) -> tuple[int, dict[str, str], dict[str, str]]:
    """Delivery number ``n``: (status, headers, JSON body) of the Guard's answer."""
    body = json.dumps({"event": "restart", "n": n}).encode()
    out = guard.receive("POST", "/x", sign_request("cloudaipilot", SECRET, body), body)
    return out.status, dict(out.headers), json.loads(out.body)


def test_a_restarted_server_answers_503_then_recovers_and_loses_nothing(
    server: PostgresServer,
) -> None:
    """Deliveries before a crash-like stop, 503 + Retry-After within the budget while it is
    down, 200 again once it is back (same Guard, same embedded consumer): every acknowledged
    delivery runs exactly once."""
    ran: list[str] = []
    lock = threading.Lock()
    guard = contract_guard(
        "cloudaipilot",
        server.url,
        endpoint="restart",
        worker="embedded",
        clock=time.time,
        retry=RetryPolicy(max_attempts=5, base_seconds=0.05, cap_seconds=0.2),
        # A claim the server committed just as it stopped never reaches the consumer: that
        # delivery comes back when its lease expires (60 s by default, longer than the wait).
        lease_seconds=2.0,
    )

    @guard.on()
    def handle(delivery: Delivery) -> None:
        with lock:
            ran.append(delivery.id)

    acknowledged: list[str] = []
    try:
        for n in range(10):
            status, _, answer = send(guard, n)
            assert status == 200
            acknowledged.append(answer["id"])
        server.stop()
        for n in range(10, 13):
            started = time.monotonic()
            status, headers, answer = send(guard, n)
            assert status == 503 and answer == {"error": "queue_unavailable"}
            assert "Retry-After" in headers and time.monotonic() - started < 3
        server.start()
        for n in range(10, 20):  # the senders' retries, and new deliveries
            status, _, answer = send(guard, n)
            assert status == 200, answer
            acknowledged.append(answer["id"])
        deadline = time.monotonic() + 30
        while sorted(set(ran)) != sorted(acknowledged):
            assert time.monotonic() < deadline, f"{len(set(ran))} of {len(acknowledged)} ran"
            time.sleep(0.05)
        time.sleep(0.2)  # nothing runs twice afterwards
        assert sorted(ran) == sorted(acknowledged)
    finally:
        guard.stop_worker()
        guard.close()
        guard.queue.dispose()  # type: ignore[attr-defined]
