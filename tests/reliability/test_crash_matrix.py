"""The crash matrix at 1 000 deliveries: workers killed with ``kill -9`` again and again while
they drain (some handlers are slow, so kills land inside them), for every sample app, and the
embedded queue with its whole web server killed mid-processing, each in both durability modes.
Nothing accepted is lost.

(``tests/test_durability.py`` holds the server-side ``kill -9`` after 1 000 200s.)
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.contract import HTTPTransport
from tests.servers import (
    free_port,
    gunicorn_command,
    kill_hard,
    processed,
    serve,
    stop,
    wait_until,
)
from tests.test_durability import DURABILITIES, SAMPLES, _env, _signed, _start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
COUNT = 1000
KILLS = 3


def _bodies() -> list[bytes]:
    """1 000 deliveries; every 40th is slow on its first attempt, so kills hit handlers."""
    return [
        json.dumps({"event": "matrix", "n": n, **({"slow": 0.3} if n % 40 == 0 else {})}).encode()
        for n in range(COUNT)
    ]


def _send(port: int, bodies: list[bytes]) -> set[str]:
    transport = HTTPTransport("127.0.0.1", port)

    def send(body: bytes) -> str:
        reply = transport.request("POST", "/webhook", _signed(body), body)
        assert reply.status == 200, reply.body
        return str(reply.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(send, bodies))


def _done(tmp_path: Path) -> set[str]:
    return {p["id"] for p in processed(tmp_path)}


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("sample", SAMPLES)
def test_workers_killed_while_draining_lose_nothing(
    sample: str, durability: str, tmp_path: Path
) -> None:
    """Three workers are kill -9'd mid-drain; a fourth finishes: every delivery processed."""
    framework, command, app, target = SAMPLES[sample]
    env = _env(tmp_path, framework, durability)
    port = free_port()
    with serve(command(app, port), env, port, tmp_path / "server.log"):
        accepted = _send(port, _bodies())
    for kill in range(KILLS):
        worker = _start_worker(target, env, tmp_path / f"worker{kill}.log")
        goal = len(_done(tmp_path)) + COUNT // (KILLS + 2)
        try:
            assert wait_until(lambda goal=goal: len(_done(tmp_path)) >= goal, limit=120)
        finally:
            kill_hard(worker)
    final = _start_worker(target, env, tmp_path / "worker-final.log")
    try:
        assert wait_until(lambda: _done(tmp_path) >= accepted, limit=180)
    finally:
        stop(final)
    assert _done(tmp_path) == accepted


@pytest.mark.parametrize("durability", DURABILITIES)
def test_embedded_queue_survives_kill_9_of_the_whole_server(
    durability: str, tmp_path: Path
) -> None:
    """The web server (and its embedded worker) is killed mid-drain; after a restart the first
    request of any kind restarts the worker, and every delivery is processed."""
    env = _env(tmp_path, "flask", durability, external=False)
    port = free_port()
    command = gunicorn_command(
        "sample_apps.flask_app:app", port, workers=2, worker_class="gthread", threads=4
    )
    with serve(command, env, port, tmp_path / "server1.log") as server:
        accepted = _send(port, _bodies())
        assert wait_until(lambda: len(_done(tmp_path)) >= COUNT // 4, limit=120)
        kill_hard(server)
    assert len(_done(tmp_path)) < COUNT, "killed while work was left"
    with serve(command, env, port, tmp_path / "server2.log"):
        wake = HTTPTransport("127.0.0.1", port).request("GET", "/webhook", {}, b"")
        assert wake.status == 405
        assert wait_until(lambda: _done(tmp_path) >= accepted, limit=180)
    assert _done(tmp_path) == accepted
