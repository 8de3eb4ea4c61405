"""Real servers as subprocesses for end-to-end tests: start, wait for the port, stop, read logs.

Every wait here is bounded and polls; nothing asserts on elapsed time.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.contract import sample_app_env

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def sample_env(tmp_path: Path, scheme: str = "cloudaipilot", **extra: str) -> dict[str, str]:
    """The sample-app environment: the contract's secrets and cap (``sample_app_env``), and the
    database and processed log inside ``tmp_path``."""
    env = dict(os.environ)
    env.update(sample_app_env(scheme))
    env.update(
        WEBHOOK_GUARD_DB=str(tmp_path / "webhook_guard.db"),
        SAMPLE_PROCESSED_LOG=str(tmp_path / "processed.jsonl"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@functools.lru_cache(maxsize=1)
def _gunicorn_extra() -> tuple[str, ...]:
    """gunicorn 27 opens a control socket at one fixed path per user: servers started one
    after another (or side by side) must not share it."""
    help_text = subprocess.run(
        [str(BIN / "gunicorn"), "--help"], capture_output=True, text=True
    ).stdout
    return ("--no-control-socket",) if "--no-control-socket" in help_text else ()


def gunicorn_command(
    app: str, port: int, *, workers: int = 1, worker_class: str = "sync", threads: int = 1
) -> list[str]:
    return [
        str(BIN / "gunicorn"),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--graceful-timeout",
        "5",
        *_gunicorn_extra(),
    ]


def uvicorn_command(app: str, port: int, *, workers: int = 1) -> list[str]:
    return [
        str(BIN / "uvicorn"),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]


def spawn(
    command: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own (so ``stop`` and ``kill_hard`` reach its whole
    process group), its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextmanager
def serve(
    command: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the ``with`` ends; it must accept connections on ``port``."""
    process = spawn(command, env, log)
    try:
        wait_for_port(port, process, log)
        yield process
    finally:
        stop(process)


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, limit: float = 30.0
) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        if port_accepts(port):
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"server did not listen on {port} within {limit}s:\n{log.read_text()[-3000:]}"
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
    _wait_for_group_exit(process.pid)


def _wait_for_group_exit(group: int, limit: float = 10.0) -> None:
    """Until no process of the group is left (a worker outliving its master would keep the
    port and the database busy), then SIGKILL whatever remains."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """``kill -9`` the whole process group: no shutdown hook of any kind runs. Returns once
    every process of the group is gone, so that none still holds the listening socket (a new
    server on the same port would otherwise seem up while a dying worker answers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    _wait_for_group_exit(process.pid)


def processed(tmp_path: Path) -> list[dict[str, Any]]:
    """The sample handler's log: one dict per successful run."""
    path = tmp_path / "processed.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(predicate: Any, limit: float = 60.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``limit`` seconds pass; return its last value."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def worker_command(target: str, *extra: str) -> list[str]:
    return [str(BIN / "webhook-guard"), "worker", target, *extra]
