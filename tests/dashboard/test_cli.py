"""``webhook-guard dashboard`` as a real subprocess: loopback only, refuses public hosts."""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.dashboard.history import build_history
from tests.servers import BIN, ROOT, free_port, serve, stop

CLI = str(BIN / "webhook-guard")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "dashboard", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_a_non_loopback_host_is_refused_and_says_why(tmp_path: Path, host: str) -> None:
    """--host off loopback: exit 2, naming the risk and the explicit flag, nothing served."""
    db = build_history(tmp_path / "q.db", now=time.time()).db
    result = run("--db", str(db), "--host", host, "--port", "0")
    assert result.returncode == 2
    assert "is not a loopback address" in result.stderr
    assert "no login of its own" in result.stderr
    assert "--i-know-this-is-public" in result.stderr


def test_a_missing_database_is_a_usage_error(tmp_path: Path) -> None:
    """--db that does not exist: exit 2, and the file is not created."""
    result = run("--db", str(tmp_path / "nope.db"), "--port", "0")
    assert result.returncode == 2
    assert "no database at" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def get(port: int, path: str = "/", host: str | None = None) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host} if host else {}
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


@pytest.mark.e2e
def test_the_cli_serves_the_history_to_loopback_only(tmp_path: Path) -> None:
    """Served on 127.0.0.1: the page with its security headers; a foreign Host (DNS
    rebinding) is 403; SIGTERM stops it with exit 0."""
    history = build_history(tmp_path / "q.db", now=time.time(), spread=3600)
    port = free_port()
    command = [CLI, "dashboard", "--db", str(history.db), "--port", str(port)]
    with serve(command, dict(os.environ), port, tmp_path / "dashboard.log") as process:
        status, headers, body = get(port)
        assert status == 200
        assert headers["x-frame-options"] == "DENY"
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert history.dead[0] in body
        status, _, body = get(port, f"/delivery/{history.dead[0]}")
        assert status == 200 and "Traceback" in body
        status, _, body = get(port, host=f"rebound.attacker.example:{port}")
        assert status == 403 and history.dead[0] not in body
        stop(process)
        assert process.returncode == 0
    log = (tmp_path / "dashboard.log").read_text()
    assert f"at http://127.0.0.1:{port}/" in log
