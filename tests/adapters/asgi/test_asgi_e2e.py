"""The Starlette and FastAPI samples under real uvicorn: the contract over real HTTP, chunked
uploads at the default cap, and 503 when the queue cannot be opened."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from tests.contract import (
    CASES,
    HTTPTransport,
    Response,
    cases_for,
    run_case,
    run_http_contract,
    sample_app_env,
)
from tests.servers import free_port, processed, sample_env, serve, uvicorn_command, wait_until
from webhook_guard.core.config import DEFAULT_MAX_BODY_BYTES
from webhook_guard.core.schemes import get_scheme

pytestmark = pytest.mark.e2e
APPS = [
    pytest.param("sample_apps.starlette_app:app", id="starlette"),
    pytest.param("sample_apps.fastapi_app:app", id="fastapi"),
]
SECRET = sample_app_env()["WEBHOOK_SECRET"].split(",")[0]
SCHEME = get_scheme("cloudaipilot")


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
@pytest.mark.parametrize("app", APPS)
def test_contract_over_real_uvicorn(tmp_path: Path, app: str, workers: int) -> None:
    """Every contract case over real HTTP; every accepted delivery then runs once, on its bytes."""
    if app.startswith("sample_apps.fastapi"):
        pytest.importorskip("fastapi")
    port = free_port()
    log = tmp_path / "server.log"
    with serve(uvicorn_command(app, port, workers=workers), sample_env(tmp_path), port, log):
        transport = HTTPTransport("127.0.0.1", port)
        index = transport.request("GET", "/", {}, b"")
        assert index.status == 200 and "sample" in index.json()["app"]
        responses = run_http_contract(transport)
        cases = [c for c in cases_for("cloudaipilot") if not c.queue_down and not c.length_lie]
        expected = {
            r.json()["id"]: hashlib.sha256(c.body).hexdigest()
            for c, r in zip(cases, responses, strict=True)
            if r.status == 200
        }
        assert wait_until(lambda: {p["id"] for p in processed(tmp_path)} >= set(expected))
    runs = processed(tmp_path)
    assert sorted(p["id"] for p in runs) == sorted(expected), "each delivery ran exactly once"
    assert all(p["sha256"] == expected[p["id"]] for p in runs), "handlers saw the exact bytes"
    assert "Traceback" not in log.read_text(), log.read_text()


def chunked_post(
    port: int, headers: dict[str, str], body: bytes, size: int = 64 * 1024
) -> Response:
    """A chunked upload with ``http.client``, as a sender streaming its body would make it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        chunks = (body[i : i + size] for i in range(0, len(body), size))
        conn.request("POST", "/webhook", body=chunks, headers=headers, encode_chunked=True)
        reply = conn.getresponse()
        return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
    finally:
        conn.close()


def padded(size: int, event: str) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    head = json.dumps({"event": event, "pad": ""}).encode()
    return head[:-2] + b"x" * (size - len(head)) + b'"}'


@pytest.mark.parametrize("app", APPS)
def test_chunked_uploads_at_the_default_cap(tmp_path: Path, app: str) -> None:
    """With the library's default 1 MiB cap: exactly the cap is accepted whole, one byte more is
    413, even when signed over the first MiB only (a truncating reader would accept it)."""
    if app.startswith("sample_apps.fastapi"):
        pytest.importorskip("fastapi")
    port = free_port()
    env = sample_env(tmp_path)
    del env["WEBHOOK_GUARD_MAX_BODY_BYTES"]  # the library default
    with serve(uvicorn_command(app, port), env, port, tmp_path / "server.log"):
        at_cap = padded(DEFAULT_MAX_BODY_BYTES, "at.cap")
        accepted = chunked_post(port, SCHEME.sign(at_cap, SECRET), at_cap)
        assert accepted.status == 200, accepted.body
        over = padded(DEFAULT_MAX_BODY_BYTES + 1, "over.cap")
        for signed_over in (over, over[:DEFAULT_MAX_BODY_BYTES]):
            refused = chunked_post(port, SCHEME.sign(signed_over, SECRET), over)
            assert (refused.status, refused.json()) == (413, {"error": "payload_too_large"})
        delivery_id = accepted.json()["id"]
        assert wait_until(lambda: any(p["id"] == delivery_id for p in processed(tmp_path)))
    assert [p["sha256"] for p in processed(tmp_path)] == [hashlib.sha256(at_cap).hexdigest()]


@pytest.mark.parametrize("app", APPS)
def test_queue_unavailable_is_503_with_retry_after(tmp_path: Path, app: str) -> None:
    """A database in a directory that does not exist: 503 + Retry-After for a valid delivery,
    and rejections still get their own answer (recording them is secondary work)."""
    if app.startswith("sample_apps.fastapi"):
        pytest.importorskip("fastapi")
    port = free_port()
    env = sample_env(tmp_path, WEBHOOK_GUARD_DB=str(unopenable(tmp_path)))
    (queue_down,) = [c for c in CASES if c.queue_down]
    (unsigned,) = [c for c in CASES if c.name == "unsigned"]
    with serve(uvicorn_command(app, port), env, port, tmp_path / "server.log"):
        transport = HTTPTransport("127.0.0.1", port)
        reply = run_case(queue_down, SCHEME, transport, now=int(time.time()))
        assert int(reply.headers["retry-after"]) > 0
        run_case(unsigned, SCHEME, transport, now=int(time.time()))


@pytest.mark.parametrize("app", APPS)
def test_an_unsigned_request_is_refused_without_100_continue(tmp_path: Path, app: str) -> None:
    """`Expect: 100-continue` without a signature header: the answer is 400 at once, never an
    invitation to send the body (which is then never read)."""
    import socket

    if app.startswith("sample_apps.fastapi"):
        pytest.importorskip("fastapi")
    port = free_port()
    with serve(uvicorn_command(app, port), sample_env(tmp_path), port, tmp_path / "server.log"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 500000\r\nExpect: 100-continue\r\n\r\n"
            )
            reply = b""
            while b'"}' not in reply:  # the status line, then the JSON body (maybe later)
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"100 Continue" not in reply and b'{"error": "missing_signature"}' in reply


def unopenable(tmp_path: Path) -> Path:
    """A database path SQLite cannot open (a directory): the store is down at every request.
    (A missing directory is refused when the app starts instead.)"""
    path = tmp_path / "a-directory.db"
    path.mkdir(exist_ok=True)
    return path
