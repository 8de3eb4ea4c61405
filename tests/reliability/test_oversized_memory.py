"""50 MiB bodies against the 1 MiB default cap: 413, and the server's peak RSS barely moves.

Peak RSS is the kernel's high-water mark (VmHWM in /proc/<pid>/status) of every process of the
server, read before and after; Linux only.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from tests.servers import free_port, gunicorn_command, sample_env, serve, uvicorn_command

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BODY_SIZE = 50 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)
LIMIT_KIB = 5 * 1024

SERVERS = {
    "flask-gunicorn": ("flask", gunicorn_command, "sample_apps.flask_app:app"),
    "django-gunicorn": ("django", gunicorn_command, "sample_apps.django_app.wsgi:application"),
    "starlette-uvicorn": ("starlette", uvicorn_command, "sample_apps.starlette_app:app"),
    "fastapi-uvicorn": ("fastapi", uvicorn_command, "sample_apps.fastapi_app:app"),
}


def _group_pids(leader: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == leader:
                    pids.append(int(entry))
    return pids


def _peak_rss_kib(leader: int) -> int:
    """The largest VmHWM among the server's processes (the worker that read the request)."""
    peaks = [0]
    for pid in _group_pids(leader):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]))
    return max(peaks)


# A well-formed (wrong) signature header: a request without one is refused before its body is
# read, and these requests must reach the cap.
SIGNATURE = "X-CloudAIPilot-Signature: sha256=" + "00" * 32 + "\r\n"


def _send_huge(port: int, chunked: bool) -> int:
    """Stream a 50 MiB POST; return the status the server answered (it may cut us off early)."""
    head = "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += SIGNATURE
    head += (
        "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {BODY_SIZE}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(BODY_SIZE // len(CHUNK)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        reply = b""
        with contextlib.suppress(ConnectionResetError, socket.timeout):
            while b"\r\n" not in reply:
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
    return int(reply.split(b" ", 2)[1])


@pytest.mark.parametrize("server", SERVERS)
def test_huge_bodies_are_413_without_growing_memory(server: str, tmp_path: Path) -> None:
    """A declared and a chunked 50 MiB body each get 413; peak RSS grows by under 5 MiB."""
    if not Path("/proc/self/status").exists():
        pytest.skip("peak RSS is read from /proc (Linux)")
    framework, command, app = SERVERS[server]
    pytest.importorskip(framework)
    env = sample_env(tmp_path, DJANGO_SETTINGS_MODULE="sample_apps.django_app.settings")
    env.pop("WEBHOOK_GUARD_MAX_BODY_BYTES")  # the library's 1 MiB default cap
    port = free_port()
    with serve(command(app, port), env, port, tmp_path / "server.log") as process:
        # Warm up with one request over the cap, so lazy imports and buffers count as baseline.
        assert _send_small_oversized(port) == 413
        before = _peak_rss_kib(process.pid)
        statuses = [_send_huge(port, chunked=False), _send_huge(port, chunked=True)]
        after = _peak_rss_kib(process.pid)
    assert statuses == [413, 413]
    assert after - before < LIMIT_KIB, f"peak RSS grew by {after - before} KiB"


def _send_small_oversized(port: int) -> int:
    body = b"y" * (1024 * 1024 + 1)
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: x\r\n{SIGNATURE}Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_server_helper_finds_its_processes() -> None:
    """The RSS probe sees this very process group (so the measurement above is not vacuous)."""
    assert os.getpid() in _group_pids(os.getpgid(0)) and _peak_rss_kib(os.getpgid(0)) > 0
