"""A Flask app written the README's way (not a sample) under real gunicorn: two guarded routes
on one default store, handlers that use current_app and write through Flask-SQLAlchemy, with
the embedded consumer and with `webhook-guard worker`; and a backlog of retrying deliveries run
after a kill -9 and a restart when only a health check arrives."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_sqlalchemy")

from tests.contract import HTTPTransport
from tests.servers import BIN, free_port, kill_hard, stop, wait_for_port, wait_until
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.e2e
SECRET = "flask-apps-secret"

APP = """
import os
from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from webhook_guard import Guard, Retry
from webhook_guard.adapters.flask import webhook

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.environ["SHOP_DB"]
app.config["SHOP_NAME"] = "acme"
db = SQLAlchemy(app)


class Handled(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    route = db.Column(db.String, nullable=False)
    delivery = db.Column(db.String, nullable=False)
    attempt = db.Column(db.Integer, nullable=False)
    shop = db.Column(db.String, nullable=False)


with app.app_context():
    db.create_all()

orders = Guard(os.environ["WEBHOOK_SECRET"], endpoint="orders")
github = Guard(os.environ["WEBHOOK_SECRET"], endpoint="github")


def record(route, delivery):
    db.session.add(Handled(route=route, delivery=delivery.id, attempt=delivery.attempt,
                           shop=current_app.config["SHOP_NAME"]))
    db.session.commit()


@app.get("/health")
def health():
    return {"ok": True}


@app.route("/orders")
@webhook(orders)
def on_order(delivery):
    fail = delivery.json().get("fail")
    if fail and delivery.attempt == 1:
        raise Retry(after=float(fail))
    record("orders", delivery)


@app.route("/github")
@webhook(github)
def on_github(delivery):
    record("github", delivery)
"""


EXTENSION_APP = """
import os
from flask import Flask, current_app
from webhook_guard.adapters.flask import WebhookGuard

hooks = WebhookGuard()


@hooks.on("invoice.paid")
def paid(delivery):
    with open(os.environ["SHOP_LOG"], "a") as log:
        log.write(current_app.config["SHOP_NAME"] + " " + delivery.id + "\\n")


app = Flask(__name__)
app.config["SHOP_NAME"] = "acme"
app.config["WEBHOOK_GUARD_SECRET"] = os.environ["WEBHOOK_SECRET"]
guard = hooks.init_app(app)
"""


def write_app(tmp_path: Path, source: str = APP) -> dict[str, str]:
    """The app module in ``tmp_path`` and the environment that serves it from there."""
    (tmp_path / "shop.py").write_text(textwrap.dedent(source))
    env = {
        **os.environ,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_GUARD_DB": str(tmp_path / "webhooks.db"),
        "SHOP_DB": str(tmp_path / "shop.db"),
        "SHOP_LOG": str(tmp_path / "handled.log"),
        "PYTHONPATH": str(tmp_path),
    }
    env.pop("WEBHOOK_GUARD_WORKER", None)
    return env


@contextmanager
def gunicorn(
    tmp_path: Path, env: dict[str, str], port: int, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``gunicorn shop:app`` (or, with ``"uvicorn"`` as ``extra``, uvicorn's WSGI interface) from
    ``tmp_path`` until the block ends."""
    log = tmp_path / "server.log"
    if extra[:1] == ("uvicorn",):  # the same WSGI app under uvicorn's WSGI interface
        command = [str(BIN / "uvicorn"), "shop:app", "--interface", "wsgi", "--port", str(port)]
    else:
        command = [str(BIN / "gunicorn"), "shop:app", "--bind", f"127.0.0.1:{port}", *extra]
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


def rows(tmp_path: Path) -> list[tuple[str, str, int, str]]:
    """(route, delivery id, attempt, shop) of every row the handlers wrote."""
    if not (tmp_path / "shop.db").exists():
        return []
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        try:
            return list(conn.execute("SELECT route, delivery, attempt, shop FROM handled"))
        except sqlite3.OperationalError:  # the table is not created yet
            return []


def send_both(port: int) -> dict[str, str]:
    """Three orders (one retried once) and three GitHub deliveries: id -> the route it needs."""
    owners = {
        post(port, "/orders", {"n": i, "fail": 0.2 if i == 0 else 0}): "orders" for i in range(3)
    }
    owners.update({post(port, "/github", {"n": 10 + i}): "github" for i in range(3)})
    return owners


def assert_each_ran_once_with_its_own_handler(tmp_path: Path, owners: dict[str, str]) -> None:
    assert wait_until(lambda: len(rows(tmp_path)) >= len(owners), limit=30), rows(tmp_path)
    time.sleep(0.3)  # a second (wrong) run would show up by now
    written = rows(tmp_path)
    assert sorted((route, id_) for route, id_, _, _ in written) == sorted(
        (route, id_) for id_, route in owners.items()
    )
    assert {shop for *_, shop in written} == {"acme"}, "current_app.config in the handler"


@pytest.mark.parametrize(
    "server",
    [(), ("--worker-class", "gthread", "--threads", "4"), ("uvicorn",)],
    ids=["gunicorn-sync", "gunicorn-gthread", "uvicorn-wsgi"],
)
def test_two_routes_on_one_store_embedded(tmp_path: Path, server: tuple[str, ...]) -> None:
    """Embedded consumer: each delivery (the retried one too) runs once, under its own route's
    Guard, inside the app context, writing through Flask-SQLAlchemy."""
    env, port = write_app(tmp_path), free_port()
    with gunicorn(tmp_path, env, port, *server):
        owners = send_both(port)
        assert_each_ran_once_with_its_own_handler(tmp_path, owners)


@pytest.mark.parametrize(
    "targets", [("shop",), ("shop:orders", "shop:github")], ids=["module", "two-guards"]
)
def test_two_routes_on_one_store_external_worker(
    tmp_path: Path, targets: tuple[str, ...]
) -> None:
    """WEBHOOK_GUARD_WORKER=external: gunicorn only receives; `webhook-guard worker shop` (or
    `shop:orders shop:github`) runs each delivery with its own Guard's handler inside the app
    context."""
    env, port = write_app(tmp_path), free_port()
    with gunicorn(tmp_path, {**env, "WEBHOOK_GUARD_WORKER": "external"}, port):
        owners = send_both(port)
        time.sleep(1.0)
        assert rows(tmp_path) == [], "an external-worker server ran handlers itself"
        worker = subprocess.Popen(
            [str(BIN / "webhook-guard"), "worker", *targets],
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


@pytest.mark.parametrize("target", ["shop", "shop:guard"])
def test_the_extension_form_with_the_external_worker(tmp_path: Path, target: str) -> None:
    """The README's extension form: gunicorn only receives; `webhook-guard worker shop` (the
    Guard init_app returned, a module global) runs the handler inside the app context."""
    env, port = write_app(tmp_path, EXTENSION_APP), free_port()
    log = tmp_path / "handled.log"
    with gunicorn(tmp_path, {**env, "WEBHOOK_GUARD_WORKER": "external"}, port):
        ids = [post(port, "/webhook", {"event": "invoice.paid", "n": i}) for i in range(2)]
    assert not log.exists(), "an external-worker server ran handlers itself"
    burst = subprocess.run(
        [str(BIN / "webhook-guard"), "worker", "--burst", target],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert burst.returncode == 0, burst.stderr
    assert sorted(log.read_text().split()) == sorted(["acme", "acme", *ids])


def test_a_backlog_of_retries_runs_after_a_restart_on_a_health_check(tmp_path: Path) -> None:
    """kill -9 while deliveries wait for their retry; after a restart a GET /health (no
    webhook) starts the consumer, which runs them."""
    env, port = write_app(tmp_path), free_port()
    db = str(tmp_path / "webhooks.db")

    def retrying() -> int:
        with sqlite3.connect(db) as conn:
            return int(
                conn.execute(
                    "SELECT COUNT(*) FROM deliveries WHERE status = 'retrying'"
                ).fetchone()[0]
            )

    with gunicorn(tmp_path, env, port) as server:
        ids = [post(port, "/orders", {"n": i, "fail": 3}) for i in range(5)]
        assert wait_until(lambda: retrying() == len(ids), limit=20)
        kill_hard(server)
    assert rows(tmp_path) == []
    with gunicorn(tmp_path, env, port):
        time.sleep(4)  # past the retries' due time: nothing runs them without a request
        assert rows(tmp_path) == []
        assert HTTPTransport("127.0.0.1", port).request("GET", "/health", {}, b"").status == 200
        assert wait_until(lambda: len(rows(tmp_path)) == len(ids), limit=30)
    assert sorted(id_ for _, id_, _, _ in rows(tmp_path)) == sorted(ids)
