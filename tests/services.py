"""Real services for engine tests (Redis, RabbitMQ on 127.0.0.1): skip when one is missing,
unless ``WEBHOOK_GUARD_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which makes it a failure."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

REQUIRE_ENV = "WEBHOOK_GUARD_REQUIRE_SERVICES"
HOW = "start {name} on 127.0.0.1:{port}; .ci/run does"


def services_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Skip the calling test (or fail it under WEBHOOK_GUARD_REQUIRE_SERVICES=1) unless
    ``name`` accepts connections on ``host:port``."""
    if port_open(port, host):
        return
    reason = f"{name} is not reachable on {host}:{port}: " + HOW.format(name=name, port=port)
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def require_redis(port: int = 6379) -> None:
    """Redis must answer PING on 127.0.0.1:``port`` (an open port alone is not enough)."""
    require_service("redis-server", port)
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.sendall(b"PING\r\n")
        answer = sock.recv(64)
    if not answer.startswith(b"+PONG"):
        reason = f"127.0.0.1:{port} does not answer PING like Redis: " + HOW.format(
            name="redis-server", port=port
        )
        if services_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def require_rabbitmq(port: int = 5672) -> None:
    require_service("rabbitmq-server", port)


def require_postgres(port: int = 5432) -> None:
    """PostgreSQL on 127.0.0.1:``port`` (user ``postgres``, trust auth, as .ci/run starts it)."""
    require_service("postgresql", port)


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A throwaway ``redis-server`` on ``port`` (no persistence) that a test may kill and start
    again, so that the machine's shared Redis is never stopped. Killed when the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed: " + HOW.format(name="redis-server", port=port)
        if services_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    process = subprocess.Popen(
        [*command, "no", "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open(port, timeout=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
