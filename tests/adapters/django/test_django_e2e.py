"""The Django sample under real gunicorn and uvicorn: the contract over HTTP, then processing."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("django")
pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")

from tests.contract import (
    CAP,
    HTTPTransport,
    Response,
    cases_for,
    run_http_contract,
    sample_app_env,
)
from tests.servers import (
    free_port,
    gunicorn_command,
    processed,
    sample_env,
    serve,
    uvicorn_command,
    wait_until,
)
from webhook_guard.core.schemes import get_scheme

pytestmark = pytest.mark.e2e
WSGI_APP = "sample_apps.django_app.wsgi:application"
ASGI_APP = "sample_apps.django_app.asgi:application"
SETTINGS = {"DJANGO_SETTINGS_MODULE": "sample_apps.django_app.settings"}
SERVERS = {
    "gunicorn-sync": lambda port: gunicorn_command(WSGI_APP, port),
    "gunicorn-gthread": lambda port: gunicorn_command(
        WSGI_APP, port, worker_class="gthread", threads=4
    ),
    "uvicorn": lambda port: uvicorn_command(ASGI_APP, port),
}


def expected_digests(scheme: str, responses: list[Response]) -> dict[str, str]:
    """delivery id -> sha256 of the body the contract sent, for every accepted case."""
    cases = [case for case in cases_for(scheme) if not case.queue_down and not case.length_lie]
    return {
        reply.json()["id"]: hashlib.sha256(case.body).hexdigest()
        for case, reply in zip(cases, responses, strict=True)
        if reply.status == 200
    }


def assert_processed_once(tmp_path: Path, digests: dict[str, str]) -> None:
    """Wait (bounded) until each accepted delivery ran, then check it ran once, on its bytes."""
    assert wait_until(lambda: {p["id"] for p in processed(tmp_path)} >= set(digests))
    runs = processed(tmp_path)
    assert sorted(p["id"] for p in runs) == sorted(digests), "each delivery ran exactly once"
    assert all(p["sha256"] == digests[p["id"]] for p in runs)


@pytest.mark.parametrize(
    ("server", "scheme"),
    [
        ("gunicorn-sync", "cloudaipilot"),
        ("gunicorn-gthread", "cloudaipilot"),
        ("uvicorn", "cloudaipilot"),
        ("uvicorn", "standard"),
    ],
)
def test_contract_over_a_real_server(tmp_path: Path, server: str, scheme: str) -> None:
    """Every contract case over real HTTP (chunked too), then every accepted delivery processed."""
    port = free_port()
    env = sample_env(tmp_path, scheme, **SETTINGS)
    with serve(SERVERS[server](port), env, port, tmp_path / "server.log"):
        transport = HTTPTransport("127.0.0.1", port)
        responses = run_http_contract(transport, scheme)
        index = transport.request("GET", "/", {}, b"")
        assert index.status == 200 and index.json()["app"] == "webhook_guard Django sample"
        assert_processed_once(tmp_path, expected_digests(scheme, responses))


@pytest.mark.parametrize("server", list(SERVERS))
def test_chunked_and_framed_bodies_at_the_cap(tmp_path: Path, server: str) -> None:
    """Exactly the cap is accepted, chunked or not; one byte more is 413, never a truncated 200."""
    port = free_port()
    secret = sample_app_env()["WEBHOOK_SECRET"].split(",")[0]
    scheme = get_scheme("cloudaipilot")
    head = b'{"event": "edge", "pad": "'
    at_cap = head + b"a" * (CAP - len(head) - 2) + b'"}'
    over = at_cap[:-2] + b'a"}'
    assert len(at_cap) == CAP and len(over) == CAP + 1
    with serve(
        SERVERS[server](port), sample_env(tmp_path, **SETTINGS), port, tmp_path / "server.log"
    ):
        transport = HTTPTransport("127.0.0.1", port)
        digests: dict[str, str] = {}
        for chunked in (True, False):
            body = at_cap.replace(b"edge", b"chnk" if chunked else b"frmd")
            reply = transport.request(
                "POST", "/webhook", scheme.sign(body, secret), body, chunked=chunked
            )
            assert reply.status == 200, reply.body
            digests[reply.json()["id"]] = hashlib.sha256(body).hexdigest()
            # Signed over the first CAP bytes: a truncating reader would find a valid signature.
            refused = transport.request(
                "POST", "/webhook", scheme.sign(over[:CAP], secret), over, chunked=chunked
            )
            assert (refused.status, refused.json()) == (413, {"error": "payload_too_large"})
        assert_processed_once(tmp_path, digests)


@pytest.mark.parametrize("server", ["gunicorn-sync", "uvicorn"])
def test_queue_unavailable_is_503_with_retry_after(tmp_path: Path, server: str) -> None:
    """A database that cannot be opened answers 503 + Retry-After, never 500."""
    port = free_port()
    env = sample_env(tmp_path, WEBHOOK_GUARD_DB=str(unopenable(tmp_path)), **SETTINGS)
    secret = env["WEBHOOK_SECRET"].split(",")[0]
    body = b'{"event": "x"}'
    with serve(SERVERS[server](port), env, port, tmp_path / "server.log"):
        reply = HTTPTransport("127.0.0.1", port).request(
            "POST", "/webhook", get_scheme("cloudaipilot").sign(body, secret), body
        )
    assert (reply.status, reply.json()) == (503, {"error": "queue_unavailable"})
    assert int(reply.headers["retry-after"]) > 0


def test_two_gunicorn_workers_process_each_delivery_once(tmp_path: Path) -> None:
    """gunicorn -w 2: each worker process has its own connection and embedded worker."""
    port = free_port()
    command = gunicorn_command(WSGI_APP, port, workers=2, worker_class="gthread", threads=4)
    transport = HTTPTransport("127.0.0.1", port)
    secret = sample_app_env()["WEBHOOK_SECRET"].split(",")[0]
    scheme = get_scheme("cloudaipilot")
    bodies = [json.dumps({"event": "load", "n": n}).encode() for n in range(40)]

    def send(body: bytes) -> tuple[str, str]:
        reply = transport.request("POST", "/webhook", scheme.sign(body, secret), body)
        assert reply.status == 200, reply.body
        return str(reply.json()["id"]), hashlib.sha256(body).hexdigest()

    with serve(command, sample_env(tmp_path, **SETTINGS), port, tmp_path / "server.log"):
        with ThreadPoolExecutor(8) as pool:
            digests = dict(pool.map(send, bodies))
        assert len(digests) == len(bodies)
        assert_processed_once(tmp_path, digests)


def unopenable(tmp_path: Path) -> Path:
    """A database path SQLite cannot open (a directory): the store is down at every request.
    (A missing directory is refused when the app starts instead.)"""
    path = tmp_path / "a-directory.db"
    path.mkdir(exist_ok=True)
    return path
