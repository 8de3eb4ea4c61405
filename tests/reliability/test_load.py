"""10 000 deliveries at concurrency 64, 5 % of them sent twice, through every adapter (Flask and
Django under gunicorn, FastAPI under uvicorn) with 2 worker processes each and their embedded
workers, in both durability modes: every accepted delivery processed, none twice, no 5xx (no
``database is locked`` escaping)."""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.contract import sample_app_env
from tests.servers import (
    free_port,
    gunicorn_command,
    processed,
    serve,
    uvicorn_command,
    wait_until,
)
from tests.test_durability import DURABILITIES, _env
from webhook_guard.core.schemes import get_scheme

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DELIVERIES = 10_000
CONCURRENCY = 64
RESENT = 0.05

SERVERS = {
    "flask-gunicorn-w2": (
        "flask",
        lambda port: gunicorn_command(
            "sample_apps.flask_app:app", port, workers=2, worker_class="gthread", threads=8
        ),
    ),
    "django-gunicorn-w2": (
        "django",
        lambda port: gunicorn_command(
            "sample_apps.django_app.wsgi:application",
            port,
            workers=2,
            worker_class="gthread",
            threads=8,
        ),
    ),
    "fastapi-uvicorn-w2": (
        "fastapi",
        lambda port: uvicorn_command("sample_apps.fastapi_app:app", port, workers=2),
    ),
}


def _plan() -> list[tuple[bytes, dict[str, str]]]:
    """Every delivery once, 5 % of them twice (same bytes, same signature), shuffled."""
    secret = sample_app_env()["WEBHOOK_SECRET"].split(",")[0]
    scheme = get_scheme("cloudaipilot")
    requests = []
    for n in range(DELIVERIES):
        body = json.dumps({"event": "load", "n": n}).encode()
        requests.append((body, scheme.sign(body, secret)))
    rng = random.Random(7)
    requests += rng.sample(requests, int(DELIVERIES * RESENT))
    rng.shuffle(requests)
    return requests


def _send_all(port: int, plan: list[tuple[bytes, dict[str, str]]]) -> Counter[tuple[int, str]]:
    """Send ``plan`` over CONCURRENCY keep-alive connections; count (status, outcome)."""
    outcomes: Counter[tuple[int, str]] = Counter()
    ids: dict[str, str] = {}
    lock = threading.Lock()
    cursor = iter(range(len(plan)))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            body, headers = plan[index]
            conn.request("POST", "/webhook", body=body, headers=headers)
            reply = conn.getresponse()
            payload = json.loads(reply.read())
            with lock:
                outcomes[(reply.status, payload.get("status") or payload.get("error"))] += 1
                if reply.status == 200:
                    assert (
                        ids.setdefault(headers["X-CloudAIPilot-Delivery"], payload["id"])
                        == payload["id"]
                    )
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("server", SERVERS)
def test_ten_thousand_with_duplicates_are_each_processed_once(
    server: str, durability: str, tmp_path: Path
) -> None:
    """All 10 500 requests get 200; 10 000 are new, 500 duplicates; each runs exactly once."""
    framework, command = SERVERS[server]
    env = _env(tmp_path, framework, durability, external=False)
    port = free_port()
    plan = _plan()
    with serve(command(port), env, port, tmp_path / "server.log"):
        outcomes = _send_all(port, plan)
        assert wait_until(lambda: len(processed(tmp_path)) >= DELIVERIES, limit=300)
    assert outcomes == Counter(
        {(200, "ok"): DELIVERIES, (200, "duplicate"): len(plan) - DELIVERIES}
    )
    runs = Counter(p["id"] for p in processed(tmp_path))
    assert len(runs) == DELIVERIES and max(runs.values()) == 1
    assert "database is locked" not in (tmp_path / "server.log").read_text()
