"""Handlers that end their thread or never return, on the sample apps under real servers: the
embedded consumer survives, and every acknowledged delivery is processed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.contract import HTTPTransport
from tests.servers import (
    free_port,
    gunicorn_command,
    processed,
    sample_env,
    serve,
    uvicorn_command,
    wait_until,
)
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.e2e
SECRET = "contract-secret"
SERVERS = {
    "flask-gunicorn-w2": lambda port: gunicorn_command(
        "sample_apps.flask_app:app", port, workers=2
    ),
    "starlette-uvicorn": lambda port: uvicorn_command("sample_apps.starlette_app:app", port),
}


def post(port: int, payload: dict[str, object]) -> str:
    """A signed delivery to the sample app; returns its id."""
    body = json.dumps(payload).encode()
    reply = HTTPTransport("127.0.0.1", port).request(
        "POST", "/webhook", sign_request("cloudaipilot", SECRET, body), body
    )
    assert reply.status == 200, reply.body
    return str(reply.json()["id"])


def sender_retrying(port: int, payload: dict[str, object]) -> str:
    """``post`` as a sender does it: a connection the dying worker dropped is tried again (the
    same bytes, so an earlier acceptance answers ``duplicate`` with the same id)."""
    import http.client

    for _ in range(10):
        try:
            return post(port, payload)
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    return post(port, payload)


@pytest.mark.parametrize("server", list(SERVERS))
def test_handlers_raising_base_exceptions_do_not_stop_the_consumer(
    tmp_path: Path, server: str
) -> None:
    """SystemExit, KeyboardInterrupt and a bare BaseException in first attempts: each of those
    deliveries is retried and processed, and so are 25 deliveries sent after them."""
    port = free_port()
    with serve(SERVERS[server](port), sample_env(tmp_path), port, tmp_path / "server.log"):
        faulty = [
            post(port, {"event": "x", "raise": kind, "n": i})
            for i, kind in enumerate(["SystemExit", "KeyboardInterrupt", "BaseException"] * 2)
        ]
        later = [post(port, {"event": "x", "n": 100 + i}) for i in range(25)]
        wanted = set(faulty + later)
        assert wait_until(lambda: wanted <= {p["id"] for p in processed(tmp_path)}, limit=60)
    assert sorted(p["id"] for p in processed(tmp_path)) == sorted(wanted), "each ran once"


@pytest.mark.parametrize("server", list(SERVERS))
def test_hanging_handlers_time_out_and_others_keep_flowing(tmp_path: Path, server: str) -> None:
    """Two deliveries whose first attempt never returns (one per worker process under -w 2):
    they time out, are retried and processed, and 25 later deliveries are processed too."""
    port = free_port()
    env = sample_env(tmp_path, WEBHOOK_GUARD_HANDLER_TIMEOUT="1")
    with serve(SERVERS[server](port), env, port, tmp_path / "server.log"):
        hung = [post(port, {"event": "x", "hang": True, "n": i}) for i in range(2)]
        later = [post(port, {"event": "x", "n": 100 + i}) for i in range(25)]
        wanted = set(hung + later)
        assert wait_until(lambda: wanted <= {p["id"] for p in processed(tmp_path)}, limit=60)
        log = (tmp_path / "server.log").read_text()
    assert "timed out after 1 s" in log


def test_a_segfaulting_handler_loses_nothing(tmp_path: Path) -> None:
    """A handler that kills its gunicorn worker with SIGSEGV: gunicorn starts another, the
    delivery comes back after its lease and is processed, and so are later deliveries."""
    port = free_port()
    command = gunicorn_command("sample_apps.flask_app:app", port, workers=2)
    with serve(command, sample_env(tmp_path), port, tmp_path / "server.log"):
        crashed = post(port, {"event": "x", "crash": "segfault"})
        later = [sender_retrying(port, {"event": "x", "n": 100 + i}) for i in range(10)]
        wanted = {crashed, *later}
        assert wait_until(lambda: wanted <= {p["id"] for p in processed(tmp_path)}, limit=60)
        log = (tmp_path / "server.log").read_text()
    assert "SIGSEGV" in log or "signal 11" in log or "Segmentation" in log, log[-2000:]
