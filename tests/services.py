"""Real services for engine tests (Redis, RabbitMQ, PostgreSQL on 127.0.0.1): skip when one is
missing, unless ``WEBHOOK_GUARD_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which makes it a
failure."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


class PostgresServer:
    """A throwaway PostgreSQL cluster of the test's own (``initdb`` in a temporary directory)
    that a test may stop and start again, so that the machine's shared server is never
    stopped. Runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses
    root)."""

    def __init__(self, bindir: Path, port: int) -> None:
        self.bindir = bindir
        self.port = port
        self.directory = Path(tempfile.mkdtemp(prefix="wg-pg-"))
        self.data = self.directory / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        """The cluster's ``postgres`` database, as the superuser (trust auth)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def initdb(self) -> None:
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._as,
        )

    def start(self) -> None:
        """Start the server and wait until it answers a query."""
        import psycopg

        command = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        command += ["-k", str(self.directory), "-c", "listen_addresses=127.0.0.1"]
        with open(self.directory / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, **self._as
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint, as after a crash); waits for the exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _postgres_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    return versions[-1].parent if versions else None


@contextmanager
def postgres_server(port: int) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the test's own on ``port``, started; stopped and removed when
    the block ends."""
    pytest.importorskip("psycopg", reason="pip install 'webhook-guard[postgres]'")
    bindir = _postgres_bindir()
    if bindir is None:
        reason = "PostgreSQL's initdb is not installed (apt-get install postgresql)"
        if services_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    server = PostgresServer(bindir, port)
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
