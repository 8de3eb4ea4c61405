"""Slow clients: bodies trickled a byte at a time while a normal sender delivers. uvicorn keeps
answering. Under gunicorn (sync and gthread) each slow body holds a worker thread until it is
complete, and a gthread worker queues new connections behind its busy threads, so a handful of
slow clients stops it: run gunicorn behind a buffering proxy such as nginx (docs/guarantees.md),
which this test does not need for uvicorn."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.contract import HTTPTransport
from tests.servers import free_port, sample_env, serve, uvicorn_command
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.e2e
SECRET = "contract-secret"

# server -> (command, how many slow clients it is given).
SERVERS = {
    "starlette-uvicorn": (
        lambda port: uvicorn_command("sample_apps.starlette_app:app", port),
        8,
    ),
    "fastapi-uvicorn": (
        lambda port: uvicorn_command("sample_apps.fastapi_app:app", port),
        8,
    ),
}


def trickle(port: int, stop: threading.Event, opened: threading.Semaphore) -> None:
    """A signed request whose 200-byte body arrives one byte every 0.2 s until ``stop``."""
    body = b'{"event": "slow", "pad": "' + b"x" * 180 + b'"}'
    headers = sign_request("cloudaipilot", SECRET, body)
    head = f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        opened.release()
        for byte in body:
            if stop.wait(0.2):
                return
            sock.sendall(bytes([byte]))


@pytest.mark.parametrize("server", list(SERVERS))
def test_slow_clients_do_not_stop_other_senders(tmp_path: Path, server: str) -> None:
    """Clients trickling their bodies; meanwhile ten normal deliveries all get 200, each while
    every slow client is still sending."""
    port = free_port()
    env = sample_env(tmp_path)
    command, clients = SERVERS[server]
    with serve(command(port), env, port, tmp_path / "server.log"):
        stop, opened = threading.Event(), threading.Semaphore(0)
        slow = [threading.Thread(target=trickle, args=(port, stop, opened)) for _ in range(clients)]
        for thread in slow:
            thread.start()
        try:
            for _ in slow:
                assert opened.acquire(timeout=10)
            time.sleep(0.5)  # the servers have the slow requests in hand now
            answers = []
            for n in range(10):
                body = json.dumps({"event": "fast", "n": n}).encode()
                reply = HTTPTransport("127.0.0.1", port, timeout=10).request(
                    "POST", "/webhook", sign_request("cloudaipilot", SECRET, body), body
                )
                answers.append((reply.status, all(t.is_alive() for t in slow)))
        finally:
            stop.set()
            for thread in slow:
                thread.join(30)
    assert answers == [(200, True)] * 10
