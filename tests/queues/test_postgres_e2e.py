"""Two real servers as two hosts (separate directories, ports and processed logs) on one
PostgreSQL queue: a delivery accepted by one is a duplicate on the other, each delivery is
processed exactly once by whichever host's consumer claims it, and a host killed with
``kill -9`` mid-traffic loses nothing that was acknowledged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import HTTPTransport
from tests.servers import (
    free_port,
    gunicorn_command,
    kill_hard,
    processed,
    sample_env,
    serve,
    uvicorn_command,
    wait_until,
)
from tests.services import postgres_schema, postgres_url, require_postgres
from webhook_guard.testing import sign_request

pytestmark = [pytest.mark.e2e, pytest.mark.services]
SECRET = "contract-secret"


@pytest.fixture
def queue_url() -> Iterator[str]:
    """A fresh schema's URL, dropped after the test."""
    require_postgres()
    with postgres_schema("e2e") as schema:
        yield postgres_url(schema)


def post(port: int, payload: dict[str, object]) -> dict[str, str]:
    """A signed delivery to a sample app; returns its JSON answer (status 200 required)."""
    body = json.dumps(payload).encode()
    reply = HTTPTransport("127.0.0.1", port).request(
        "POST", "/webhook", sign_request("cloudaipilot", SECRET, body), body
    )
    assert reply.status == 200, reply.body
    answer: dict[str, str] = reply.json()
    return answer


def host(tmp_path: Path, name: str, queue_url: str, **extra: str) -> tuple[Path, dict[str, str]]:
    """A host's own directory and environment, on the shared queue."""
    directory = tmp_path / name
    directory.mkdir()
    return directory, sample_env(directory, WEBHOOK_GUARD_QUEUE=queue_url, **extra)


def processed_ids(*directories: Path) -> list[str]:
    """Every successful run logged by the hosts' handlers (one entry per run)."""
    return [p["id"] for d in directories for p in processed(d)]


def test_two_hosts_share_dedupe_and_process_each_delivery_once(
    tmp_path: Path, queue_url: str
) -> None:
    """gunicorn (Flask, 2 workers) and uvicorn (Starlette) on one queue: the same delivery
    sent to both is accepted once; 30 deliveries spread over both run exactly once each."""
    dir_a, env_a = host(tmp_path, "a", queue_url)
    dir_b, env_b = host(tmp_path, "b", queue_url)
    port_a, port_b = free_port(), free_port()
    server_a = gunicorn_command("sample_apps.flask_app:app", port_a, workers=2)
    server_b = uvicorn_command("sample_apps.starlette_app:app", port_b)
    with (
        serve(server_a, env_a, port_a, dir_a / "server.log"),
        serve(server_b, env_b, port_b, dir_b / "server.log"),
    ):
        first = post(port_a, {"event": "shared", "n": 0})
        again = post(port_b, {"event": "shared", "n": 0})
        assert first["status"] == "ok"
        assert again == {"status": "duplicate", "id": first["id"]}
        ids = {first["id"]}
        for n in range(1, 31):
            ids.add(post(port_a if n % 2 else port_b, {"event": "spread", "n": n})["id"])
        assert len(ids) == 31
        assert wait_until(lambda: set(processed_ids(dir_a, dir_b)) >= ids, limit=60)
    assert sorted(processed_ids(dir_a, dir_b)) == sorted(ids), "each delivery ran exactly once"


def test_a_host_killed_mid_traffic_loses_nothing(tmp_path: Path, queue_url: str) -> None:
    """Host A is killed with kill -9 while its consumer runs a slow handler: host B (started
    after) takes that delivery back once A's 1 s lease expires, and processes everything A
    acknowledged and everything sent to B; the history shows A's attempt as lost."""
    from webhook_guard.queues.postgres import PostgresQueue

    lease = {"WEBHOOK_GUARD_LEASE_SECONDS": "1"}
    dir_a, env_a = host(tmp_path, "a", queue_url, **lease)
    dir_b, env_b = host(tmp_path, "b", queue_url, **lease)
    port_a, port_b = free_port(), free_port()
    history = PostgresQueue(queue_url)
    acknowledged: list[str] = []
    try:
        server_a = uvicorn_command("sample_apps.starlette_app:app", port_a)
        with serve(server_a, env_a, port_a, dir_a / "server.log") as process_a:
            for n in range(10):  # the first (A's consumer takes it first) runs for 30 s
                slow = {"slow": 30} if n == 0 else {}
                acknowledged.append(post(port_a, {"event": "k", "n": n, **slow})["id"])
            assert wait_until(lambda: history.counts().get("processing", 0) >= 1, limit=20)
            kill_hard(process_a)
        server_b = uvicorn_command("sample_apps.starlette_app:app", port_b)
        with serve(server_b, env_b, port_b, dir_b / "server.log"):
            for n in range(10, 20):
                acknowledged.append(post(port_b, {"event": "k", "n": n})["id"])
            assert wait_until(
                lambda: set(processed_ids(dir_a, dir_b)) >= set(acknowledged), limit=90
            )
        assert processed(dir_a) == [] and len(processed(dir_b)) == 20
        lost = [
            record
            for record in (history.get(i) for i in acknowledged)
            if record and any(a.outcome == "lost" for a in record.attempt_log)
        ]
        assert len(lost) == 1 and lost[0].status == "processed"
    finally:
        history.dispose()
