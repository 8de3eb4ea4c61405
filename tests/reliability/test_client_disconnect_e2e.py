"""A client that hangs up mid-body, against real servers: one log line, no traceback, no 500,
nothing stored, and the server goes on answering."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.contract import HTTPTransport
from tests.servers import BIN, free_port, gunicorn_command, sample_env, serve, uvicorn_command
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.e2e
SECRET = "contract-secret"

SERVERS = {
    "flask-gunicorn-sync": lambda port: gunicorn_command("sample_apps.flask_app:app", port),
    "flask-gunicorn-gthread": lambda port: gunicorn_command(
        "sample_apps.flask_app:app", port, worker_class="gthread", threads=4
    ),
    "starlette-uvicorn": lambda port: uvicorn_command("sample_apps.starlette_app:app", port),
}


def hang_up_mid_body(port: int) -> None:
    body = json.dumps({"event": "cut", "pad": "x" * 400}).encode()
    headers = sign_request("cloudaipilot", SECRET, body)
    head = f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body[:100])
        time.sleep(0.3)  # the server is reading the body now


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_client_that_hangs_up_mid_body_is_one_line_and_nothing_stored(
    tmp_path: Path, server: str
) -> None:
    port = free_port()
    env = sample_env(tmp_path)
    log = tmp_path / "server.log"
    with serve(SERVERS[server](port), env, port, log):
        for _ in range(3):
            hang_up_mid_body(port)
        body = json.dumps({"event": "after"}).encode()
        reply = HTTPTransport("127.0.0.1", port, timeout=10).request(
            "POST", "/webhook", sign_request("cloudaipilot", SECRET, body), body
        )
        time.sleep(0.5)  # what the server logs about the hang-ups is written by now
        output = log.read_text()
    history = subprocess.run(
        [str(BIN / "webhook-guard"), "history", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = [json.loads(line).get("event") for line in history.splitlines()]
    assert reply.status == 200
    assert "cut" not in events and "after" in events
    assert "Traceback" not in output and " 500 " not in output, output[-3000:]
