"""Slow clients: bodies trickled a byte at a time while a normal sender delivers. Every server
stays up: a body still arriving at the request deadline (5 s, the default) is refused with 408,
and the normal deliveries get their 200 within a sender's 10 s.

uvicorn reads bodies on its event loop and never runs short of anything. gunicorn holds a
worker thread per body being read; webhook_guard cuts a slow body off at the deadline through
the socket gunicorn exposes, so a request queued behind slow bodies waits at most one deadline
per round of them. Which gunicorn worker accepts a connection is up to the kernel, so one
worker may get all the slow clients: with as many as a worker has threads (4 under gthread
2 x 4, 1 under sync ``-w 2``, tried with 2), a normal sender waits one deadline at most. More
slow clients than that queue up deadline after deadline: run gunicorn behind a buffering proxy
(docs/guarantees.md)."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.contract import HTTPTransport
from tests.servers import free_port, gunicorn_command, sample_env, serve, uvicorn_command
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.e2e
SECRET = "contract-secret"
SENDER_TIMEOUT = 10.0

# server -> (command, how many slow clients it is given).
SERVERS: dict[str, tuple[Callable[[int], list[str]], int]] = {
    "starlette-uvicorn": (
        lambda port: uvicorn_command("sample_apps.starlette_app:app", port),
        8,
    ),
    "fastapi-uvicorn": (
        lambda port: uvicorn_command("sample_apps.fastapi_app:app", port),
        8,
    ),
    "flask-gunicorn-gthread-2x4": (
        lambda port: gunicorn_command(
            "sample_apps.flask_app:app", port, workers=2, worker_class="gthread", threads=4
        ),
        4,
    ),
    "django-gunicorn-gthread-2x4": (
        lambda port: gunicorn_command(
            "sample_apps.django_app.wsgi:application",
            port,
            workers=2,
            worker_class="gthread",
            threads=4,
        ),
        4,
    ),
    "flask-gunicorn-sync-w2": (
        lambda port: gunicorn_command("sample_apps.flask_app:app", port, workers=2),
        2,
    ),
}


def trickle(
    port: int, stop: threading.Event, opened: threading.Semaphore, results: list[tuple[int, bool]]
) -> None:
    """A signed request whose 200-byte body arrives one byte every 0.2 s (40 s in all) until
    the server answers or ``stop``; records (status, whether the body was still incomplete)."""
    body = b'{"event": "slow", "pad": "' + b"x" * 180 + b'"}'
    headers = sign_request("cloudaipilot", SECRET, body)
    head = f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        opened.release()
        sent = 0
        for byte in body:
            answered, _, _ = select.select([sock], [], [], 0.2)
            if answered or stop.is_set():
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # the server closed after answering
                break
            sent += 1
        try:
            status_line = sock.makefile("rb").readline()
        except OSError:
            status_line = b""
    status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else 0
    results.append((status, sent < len(body)))


@pytest.mark.parametrize("server", list(SERVERS))
def test_slow_clients_do_not_stop_other_senders(tmp_path: Path, server: str) -> None:
    """Clients trickling their bodies; meanwhile ten normal deliveries all get 200 within a
    sender's timeout, and every slow client gets 408 before its body is complete."""
    port = free_port()
    env = sample_env(tmp_path, DJANGO_SETTINGS_MODULE="sample_apps.django_app.settings")
    command, clients = SERVERS[server]
    results: list[tuple[int, bool]] = []
    with serve(command(port), env, port, tmp_path / "server.log"):
        stop, opened = threading.Event(), threading.Semaphore(0)
        slow = [
            threading.Thread(target=trickle, args=(port, stop, opened, results))
            for _ in range(clients)
        ]
        for thread in slow:
            thread.start()
        try:
            for _ in slow:
                assert opened.acquire(timeout=10)
            time.sleep(0.5)  # the servers have the slow requests in hand now
            answers = []
            for n in range(10):
                body = json.dumps({"event": "fast", "n": n}).encode()
                try:
                    reply = HTTPTransport("127.0.0.1", port, timeout=SENDER_TIMEOUT).request(
                        "POST", "/webhook", sign_request("cloudaipilot", SECRET, body), body
                    )
                    answers.append(reply.status)
                except OSError as error:  # no answer within the sender's timeout
                    answers.append(repr(error))
            for thread in slow:
                thread.join(30)
        finally:
            stop.set()
            for thread in slow:
                thread.join(30)
    assert answers == [200] * 10
    assert results == [(408, True)] * clients
