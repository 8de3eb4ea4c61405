"""Real services for engine tests (Redis, RabbitMQ, PostgreSQL on 127.0.0.1): skip when one is
missing, unless ``WEBHOOK_GUARD_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which makes it a
failure."""

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


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
HOW_POSTGRES = (
    "start PostgreSQL on 127.0.0.1:5432 with a user postgres (trust auth) and a database test "
    "(e.g. docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test "
    "postgres); .ci/run does"
)


def require_postgres() -> None:
    """PostgreSQL must accept ``POSTGRES_ADMIN_URL`` (an open port alone is not enough).
    Without psycopg 3 the test is skipped, services required or not: a missing package is the
    venv's choice (the arq venv has none), not a missing service."""
    psycopg = pytest.importorskip("psycopg", reason="pip install 'webhook-guard[postgres]'")
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        reason = f"PostgreSQL is not usable at {POSTGRES_ADMIN_URL} ({error}): {HOW_POSTGRES}"
        if services_required():
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(reason)


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A fresh, empty schema name in the test database (``require_postgres`` first); dropped
    with everything in it when the block ends."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def postgres_url(schema: str, **options: str) -> str:
    """The test database's URL with ``?schema=`` (and any other query options)."""
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
    return f"{POSTGRES_ADMIN_URL}?{query}"


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
