"""The Flask sample under real gunicorn: the contract over real HTTP, chunked bodies included."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("flask")
pytest.importorskip("gunicorn")

from tests.contract import CAP, HTTPTransport, run_http_contract, sample_app_env
from tests.servers import (
    free_port,
    gunicorn_command,
    processed,
    sample_env,
    serve,
    wait_until,
)
from webhook_guard.core.schemes import get_scheme

pytestmark = pytest.mark.e2e
APP = "sample_apps.flask_app:app"


@pytest.mark.parametrize(
    ("worker_class", "threads"), [("sync", 1), ("gthread", 4)], ids=["sync", "gthread"]
)
def test_contract_over_real_gunicorn(tmp_path: Path, worker_class: str, threads: int) -> None:
    """Every contract case over real HTTP, then every accepted delivery is processed once."""
    port = free_port()
    command = gunicorn_command(APP, port, worker_class=worker_class, threads=threads)
    with serve(command, sample_env(tmp_path), port, tmp_path / "server.log"):
        responses = run_http_contract(HTTPTransport("127.0.0.1", port))
        accepted = {r.json()["id"] for r in responses if r.status == 200}
        assert wait_until(lambda: {p["id"] for p in processed(tmp_path)} >= accepted)
    runs = [p["id"] for p in processed(tmp_path)]
    assert sorted(runs) == sorted(accepted), "each accepted delivery ran exactly once"


def test_chunked_body_over_the_cap_is_413_not_a_truncated_200(tmp_path: Path) -> None:
    """Werkzeug truncates oversized chunked bodies; the adapter refuses them instead."""
    port = free_port()
    transport = HTTPTransport("127.0.0.1", port)
    secret = sample_app_env()["WEBHOOK_SECRET"].split(",")[0]
    scheme = get_scheme("cloudaipilot")
    with serve(gunicorn_command(APP, port), sample_env(tmp_path), port, tmp_path / "server.log"):
        big = json.dumps({"event": "big", "pad": "x" * (CAP * 3)}).encode()
        # Signed over the first CAP bytes: a truncating reader would find a valid signature.
        truncated_headers = scheme.sign(big[:CAP], secret)
        over = transport.request("POST", "/webhook", truncated_headers, big, chunked=True)
        assert over.status == 413 and over.json() == {"error": "payload_too_large"}
        small = json.dumps({"event": "small", "pad": "y" * (CAP // 2)}).encode()
        under = transport.request(
            "POST", "/webhook", scheme.sign(small, secret), small, chunked=True
        )
        assert under.status == 200, under.body
        delivery_id = under.json()["id"]
        assert wait_until(lambda: any(p["id"] == delivery_id for p in processed(tmp_path)))
    (run,) = [p for p in processed(tmp_path) if p["id"] == delivery_id]
    assert run["sha256"] == hashlib.sha256(small).hexdigest()


def test_queue_unavailable_is_503_with_retry_after(tmp_path: Path) -> None:
    """A database that cannot be opened answers 503 + Retry-After, never 500."""
    port = free_port()
    env = sample_env(tmp_path, WEBHOOK_GUARD_DB=str(unopenable(tmp_path)))
    secret = env["WEBHOOK_SECRET"].split(",")[0]
    body = b'{"event": "x"}'
    with serve(gunicorn_command(APP, port), env, port, tmp_path / "server.log"):
        reply = HTTPTransport("127.0.0.1", port).request(
            "POST", "/webhook", get_scheme("cloudaipilot").sign(body, secret), body
        )
    assert reply.status == 503
    assert reply.json() == {"error": "queue_unavailable"}
    assert int(reply.headers["retry-after"]) > 0


def test_preloaded_app_with_two_workers_processes_each_delivery_once(tmp_path: Path) -> None:
    """gunicorn --preload -w 2: each forked worker opens its own SQLite and runs its own worker."""
    port = free_port()
    command = [
        *gunicorn_command(APP, port, workers=2, worker_class="gthread", threads=4),
        "--preload",
    ]
    transport = HTTPTransport("127.0.0.1", port)
    secret = sample_app_env()["WEBHOOK_SECRET"].split(",")[0]
    scheme = get_scheme("cloudaipilot")
    bodies = [json.dumps({"event": "load", "n": n}).encode() for n in range(60)]

    def send(body: bytes) -> str:
        reply = transport.request("POST", "/webhook", scheme.sign(body, secret), body)
        assert reply.status == 200, reply.body
        return str(reply.json()["id"])

    with serve(command, sample_env(tmp_path), port, tmp_path / "server.log"):
        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(send, bodies))
        assert wait_until(lambda: {p["id"] for p in processed(tmp_path)} >= ids)
    runs = [p["id"] for p in processed(tmp_path)]
    assert len(ids) == 60 and sorted(runs) == sorted(ids)


def unopenable(tmp_path: Path) -> Path:
    """A database path SQLite cannot open (a directory): the store is down at every request.
    (A missing directory is refused when the app starts instead.)"""
    path = tmp_path / "a-directory.db"
    path.mkdir(exist_ok=True)
    return path
