"""Durability, proven by killing processes: a 200 survives ``kill -9`` of the server, and a
delivery whose worker is killed mid-handler is processed after its lease expires.

Runs against every sample app under its real server, with the worker external
(``WEBHOOK_GUARD_WORKER=external``) so the kill hits exactly one side.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.contract import HTTPTransport, sample_app_env
from tests.servers import (
    BIN,
    ROOT,
    free_port,
    gunicorn_command,
    kill_hard,
    processed,
    sample_env,
    serve,
    stop,
    uvicorn_command,
    wait_until,
    worker_command,
)
from webhook_guard.core.schemes import get_scheme
from webhook_guard.queues.sqlite import SQLiteQueue

pytestmark = pytest.mark.e2e

# name -> (framework module, server command builder, app, guard)
SAMPLES = {
    "flask-gunicorn": (
        "flask",
        gunicorn_command,
        "sample_apps.flask_app:app",
        "sample_apps.flask_app:guard",
    ),
    "django-gunicorn": (
        "django",
        gunicorn_command,
        "sample_apps.django_app.wsgi:application",
        "sample_apps.django_app.webhooks:guard",
    ),
    "django-uvicorn": (
        "django",
        uvicorn_command,
        "sample_apps.django_app.asgi:application",
        "sample_apps.django_app.webhooks:guard",
    ),
    "starlette-uvicorn": (
        "starlette",
        uvicorn_command,
        "sample_apps.starlette_app:app",
        "sample_apps.starlette_app:guard",
    ),
    "fastapi-uvicorn": (
        "fastapi",
        uvicorn_command,
        "sample_apps.fastapi_app:app",
        "sample_apps.fastapi_app:guard",
    ),
}
DELIVERIES = 40
# SQLiteQueue's two modes ("power": synchronous=FULL, the default; "process": NORMAL). Both
# promise that a 200 survives a killed process, so every kill -9 test runs in both.
DURABILITIES = ("power", "process")
# Prints the repr of a Guard's queue, the Guard given as module and attribute.
_SHOW_QUEUE = (
    "import importlib, sys; "
    "print(repr(getattr(importlib.import_module(sys.argv[1]), sys.argv[2]).queue))"
)


def _queue_url(tmp_path: Path, durability: str) -> str:
    """The SQLite queue at ``sample_env``'s database (``WEBHOOK_GUARD_DB``) in ``durability``
    mode: the URL wins over the path, so the sample apps and their workers open it so."""
    return f"sqlite:///{tmp_path / 'webhook_guard.db'}?durability={durability}"


def _env(
    tmp_path: Path, framework: str, durability: str = "power", *, external: bool = True
) -> dict[str, str]:
    """The sample app's environment, its queue in ``durability`` mode, its worker external
    (``external=False``: each web process runs its embedded worker)."""
    pytest.importorskip(framework)
    extra = {"WEBHOOK_GUARD_QUEUE": _queue_url(tmp_path, durability)}
    if external:
        extra["WEBHOOK_GUARD_WORKER"] = "external"
    if framework == "django":
        extra["DJANGO_SETTINGS_MODULE"] = "sample_apps.django_app.settings"
    return sample_env(tmp_path, **extra)


def _start_worker(target: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            worker_command(target),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _signed(body: bytes) -> dict[str, str]:
    secret = sample_app_env()["WEBHOOK_SECRET"].split(",")[0]
    return get_scheme("cloudaipilot").sign(body, secret)


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("sample", SAMPLES)
def test_the_samples_queue_takes_its_durability_from_the_environment(
    sample: str, durability: str, tmp_path: Path
) -> None:
    """What the kill -9 tests rely on to cover both modes: the app's Guard (as the server and
    the worker import it) opens its queue in the mode ``_env`` asks for."""
    framework, _, _, target = SAMPLES[sample]
    env = _env(tmp_path, framework, durability)
    module, attribute = target.split(":")
    shown = subprocess.run(
        [str(BIN / "python"), "-c", _SHOW_QUEUE, module, attribute],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == f"<SQLiteQueue {str(tmp_path / 'webhook_guard.db')!r} durability={durability}>"


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("count", [DELIVERIES, pytest.param(1000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_200_survives_kill_9_of_the_server(
    sample: str, count: int, durability: str, tmp_path: Path
) -> None:
    """kill -9 right after the 200s; a worker started afterwards processes every one of them."""
    framework, command, app, target = SAMPLES[sample]
    env = _env(tmp_path, framework, durability)
    port = free_port()
    transport = HTTPTransport("127.0.0.1", port)
    bodies = {json.dumps({"event": "crash.server", "n": n}).encode() for n in range(count)}

    def send(body: bytes) -> tuple[str, bytes]:
        reply = transport.request("POST", "/webhook", _signed(body), body)
        assert reply.status == 200, reply.body
        return str(reply.json()["id"]), body

    with serve(command(app, port), env, port, tmp_path / "server.log") as server:
        with ThreadPoolExecutor(8) as pool:
            accepted = dict(pool.map(send, bodies))
        kill_hard(server)
    assert processed(tmp_path) == [], "nothing ran before the worker started"

    worker = _start_worker(target, env, tmp_path / "worker.log")
    try:
        assert wait_until(lambda: len(processed(tmp_path)) >= len(accepted)), (
            tmp_path / "worker.log"
        ).read_text()
    finally:
        stop(worker)
    assert worker.returncode == 0, "SIGTERM stops the worker gracefully"
    runs = {p["id"]: p["sha256"] for p in processed(tmp_path)}
    assert len(runs) == len(processed(tmp_path)) == len(accepted)
    assert runs == {i: hashlib.sha256(b).hexdigest() for i, b in accepted.items()}


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("sample", SAMPLES)
def test_kill_9_of_the_worker_mid_handler_is_retried_after_the_lease(
    sample: str, durability: str, tmp_path: Path
) -> None:
    """A worker killed inside a handler loses its lease; the next worker runs the delivery."""
    framework, command, app, target = SAMPLES[sample]
    env = _env(tmp_path, framework, durability)
    port = free_port()
    body = json.dumps({"event": "crash.worker", "slow": 60}).encode()
    with serve(command(app, port), env, port, tmp_path / "server.log"):
        reply = HTTPTransport("127.0.0.1", port).request("POST", "/webhook", _signed(body), body)
    assert reply.status == 200
    delivery_id = reply.json()["id"]
    queue = SQLiteQueue(env["WEBHOOK_GUARD_DB"])

    first = _start_worker(target, env, tmp_path / "worker1.log")
    try:
        assert wait_until(lambda: queue.get(delivery_id).status == "processing")  # type: ignore[union-attr]
    finally:
        kill_hard(first)
    second = _start_worker(target, env, tmp_path / "worker2.log")
    try:
        assert wait_until(lambda: processed(tmp_path) != [], limit=60)
    finally:
        stop(second)
    (run,) = processed(tmp_path)
    assert run["id"] == delivery_id and run["sha256"] == hashlib.sha256(body).hexdigest()
    record = queue.get(delivery_id)
    assert record is not None and record.status == "processed"
    assert [a.outcome for a in record.attempt_log] == ["lost", "processed"]
