"""A FastAPI app written the README's way (not a sample), under real uvicorn: two webhook paths
on one default store, each delivery run only by its own Guard's handlers, embedded and with the
external worker; and a backlog of retrying deliveries run after a kill -9 and a restart with no
new webhook arriving (the consumer starts with the lifespan)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from tests.contract import HTTPTransport
from tests.servers import BIN, free_port, kill_hard, stop, wait_for_port, wait_until
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.e2e
SECRET = "asgi-apps-secret"

APP = """
import json, os
from fastapi import FastAPI
from webhook_guard import Guard, Retry
from webhook_guard.adapters.asgi import WebhookGuardMiddleware

LOG = os.environ["HANDLED_LOG"]
orders = Guard(os.environ["WEBHOOK_SECRET"], endpoint="orders")
github = Guard(os.environ["WEBHOOK_SECRET"], endpoint="github")
app = FastAPI()


@app.get("/health")
def health():
    return {"ok": True}


def log(name, delivery):
    with open(LOG, "a") as out:
        out.write(json.dumps([name, delivery.id, delivery.attempt]) + "\\n")


@orders.on()
def on_order(delivery):
    if delivery.json().get("fail") and delivery.attempt == 1:
        raise Retry(after=float(delivery.json()["fail"]))
    log("orders", delivery)


@github.on()
def on_github(delivery):
    log("github", delivery)


app.add_middleware(WebhookGuardMiddleware, routes={"/orders": orders, "/github": github})
"""


def write_app(tmp_path: Path) -> dict[str, str]:
    """The app module in ``tmp_path`` and the environment that serves it from there."""
    (tmp_path / "shop.py").write_text(textwrap.dedent(APP))
    env = {
        **os.environ,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_GUARD_DB": str(tmp_path / "webhooks.db"),
        "HANDLED_LOG": str(tmp_path / "handled.jsonl"),
        "PYTHONPATH": str(tmp_path),
    }
    env.pop("WEBHOOK_GUARD_WORKER", None)
    return env


@contextmanager
def uvicorn(tmp_path: Path, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``uvicorn shop:app`` from ``tmp_path`` until the block ends."""
    log = tmp_path / "server.log"
    command = [str(BIN / "uvicorn"), "shop:app", "--port", str(port), "--log-level", "warning"]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, process, log)
        yield process
    finally:
        stop(process)


def post(port: int, path: str, payload: dict[str, object]) -> str:
    """A signed delivery over HTTP; returns its id."""
    body = json.dumps(payload).encode()
    reply = HTTPTransport("127.0.0.1", port).request(
        "POST", path, sign_request("cloudaipilot", SECRET, body), body
    )
    assert reply.status == 200, reply.body
    return str(reply.json()["id"])


def handled(tmp_path: Path) -> list[tuple[str, str, int]]:
    """(handler, delivery id, attempt) for every successful handler run."""
    log = tmp_path / "handled.jsonl"
    if not log.exists():
        return []
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def send_both(port: int) -> dict[str, str]:
    """Three orders (one retried once) and three GitHub deliveries: id -> the handler it needs."""
    owners = {
        post(port, "/orders", {"n": i, "fail": 0.2 if i == 0 else 0}): "orders" for i in range(3)
    }
    owners.update({post(port, "/github", {"n": 10 + i}): "github" for i in range(3)})
    return owners


def assert_each_ran_once_with_its_own_handler(tmp_path: Path, owners: dict[str, str]) -> None:
    assert wait_until(lambda: len(handled(tmp_path)) >= len(owners), limit=30), handled(tmp_path)
    time.sleep(0.3)  # a second (wrong) run would show up by now
    runs = handled(tmp_path)
    assert sorted((name, id_) for name, id_, _ in runs) == sorted(
        (name, id_) for id_, name in owners.items()
    )


def test_two_paths_on_one_store_run_only_their_own_handlers_embedded(tmp_path: Path) -> None:
    """Embedded consumer (one per store): each delivery, the retried one too, runs once, under
    the handlers of the Guard whose path received it."""
    env, port = write_app(tmp_path), free_port()
    with uvicorn(tmp_path, env, port):
        owners = send_both(port)
        assert_each_ran_once_with_its_own_handler(tmp_path, owners)


def test_two_paths_on_one_store_run_only_their_own_handlers_external(tmp_path: Path) -> None:
    """WEBHOOK_GUARD_WORKER=external for a Guard built in code: the server only receives, and
    `webhook-guard worker shop` runs each delivery with its own Guard's handlers."""
    env, port = write_app(tmp_path), free_port()
    with uvicorn(tmp_path, {**env, "WEBHOOK_GUARD_WORKER": "external"}, port):
        owners = send_both(port)
        time.sleep(1.0)
        assert handled(tmp_path) == [], "an external-worker server ran handlers itself"
        worker = subprocess.Popen(
            [str(BIN / "webhook-guard"), "worker", "shop"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert_each_ran_once_with_its_own_handler(tmp_path, owners)
        finally:
            worker.terminate()
            assert worker.wait(30) == 0


def test_a_backlog_of_retries_runs_after_a_restart_with_no_new_webhook(tmp_path: Path) -> None:
    """kill -9 while deliveries wait for their retry; the restarted server runs them although
    no webhook (and no request at all) arrives: the consumer starts with the lifespan."""
    env, port = write_app(tmp_path), free_port()
    with uvicorn(tmp_path, env, port) as server:
        ids = [post(port, "/orders", {"n": i, "fail": 3}) for i in range(5)]
        db = str(tmp_path / "webhooks.db")

        def all_retrying() -> bool:
            out = subprocess.run(
                [str(BIN / "webhook-guard"), "history", "--db", db, "--json"],
                capture_output=True,
                text=True,
            ).stdout
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
            return sum(1 for r in rows if r.get("status") == "retrying") == len(ids)

        assert wait_until(all_retrying, limit=20)
        kill_hard(server)
    assert handled(tmp_path) == []
    with uvicorn(tmp_path, env, port):
        assert wait_until(lambda: len(handled(tmp_path)) == len(ids), limit=30)
    assert sorted(id_ for _, id_, _ in handled(tmp_path)) == sorted(ids)
