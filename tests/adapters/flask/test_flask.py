"""The Flask adapter through Flask's own test client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

flask = pytest.importorskip("flask")

from tests.contract import NOW, SECRET, contract_guard  # noqa: E402
from webhook_guard.adapters.flask import WebhookGuard, webhook  # noqa: E402
from webhook_guard.core.delivery import Delivery  # noqa: E402
from webhook_guard.queues.sqlite import SQLiteQueue  # noqa: E402
from webhook_guard.testing import sign_request  # noqa: E402
from webhook_guard.worker import Worker  # noqa: E402

BODY = json.dumps({"event": "invoice.paid", "n": 1}).encode()


def test_decorated_function_runs_in_the_worker_not_the_request(tmp_path: Path) -> None:
    """The view answers 200 at once; the decorated function runs only when the worker does."""
    guard = contract_guard("cloudaipilot", SQLiteQueue(tmp_path / "q.db"))
    seen: list[Delivery] = []
    app = flask.Flask(__name__)

    @app.route("/webhook")
    @webhook(guard, "invoice.*")
    def on_paid(delivery: Delivery) -> None:
        seen.append(delivery)

    response = app.test_client().post(
        "/webhook", data=BODY, headers=sign_request("cloudaipilot", SECRET, BODY)
    )
    assert response.status_code == 200
    assert seen == []
    assert Worker(guard).drain(timeout=10) == 1
    assert [d.body for d in seen] == [BODY]
    assert seen[0].json() == {"event": "invoice.paid", "n": 1}


def test_extension_reads_its_settings_from_app_config(tmp_path: Path) -> None:
    """init_app builds the Guard from WEBHOOK_GUARD_* settings and serves WEBHOOK_GUARD_PATH."""
    app = flask.Flask(__name__)
    app.config.update(
        WEBHOOK_GUARD_SECRET=SECRET,
        WEBHOOK_GUARD_DB=str(tmp_path / "q.db"),
        WEBHOOK_GUARD_PATH="/hooks/cap",
        WEBHOOK_GUARD_WORKER="external",
        WEBHOOK_GUARD_MAX_BODY_BYTES="100",
    )
    hooks = WebhookGuard()
    seen: list[str] = []

    @hooks.on("invoice.paid")
    def paid(delivery: Delivery) -> None:
        seen.append(delivery.id)

    hooks.init_app(app)
    client = app.test_client()
    ok = client.post("/hooks/cap", data=BODY, headers=sign_request("cloudaipilot", SECRET, BODY))
    assert ok.status_code == 200
    big = b"x" * 101
    assert (
        client.post(
            "/hooks/cap", data=big, headers=sign_request("cloudaipilot", SECRET, big)
        ).status_code
        == 413
    )
    assert hooks.guard is app.extensions["webhook_guard"].guard
    assert Worker(hooks.guard).drain(timeout=10) == 1
    assert seen == [ok.get_json()["id"]]


def test_a_hook_that_read_the_body_first_does_not_empty_it(tmp_path: Path) -> None:
    """A before_request hook calling get_data() leaves the bytes to verify intact."""
    guard = contract_guard("cloudaipilot", SQLiteQueue(tmp_path / "q.db"))
    app = flask.Flask(__name__)

    @app.before_request
    def peek() -> None:
        flask.request.get_data(cache=True)

    app.add_url_rule("/webhook", "webhook", webhook(guard)(lambda d: None))
    response = app.test_client().post(
        "/webhook", data=BODY, headers=sign_request("cloudaipilot", SECRET, BODY)
    )
    assert response.status_code == 200, response.data


def test_rejections_are_recorded_without_body_or_credentials(tmp_path: Path) -> None:
    """A rejected request leaves metadata in the history, never its body or Authorization."""
    guard = contract_guard("cloudaipilot", SQLiteQueue(tmp_path / "q.db"))
    app = flask.Flask(__name__)
    app.add_url_rule("/webhook", "webhook", webhook(guard)(lambda d: None))
    body = b'{"card": "4242424242424242"}'
    headers = {"X-CloudAIPilot-Signature": "sha256=" + "0" * 64, "Authorization": "Bearer tok-123"}
    response = app.test_client().post("/webhook", data=body, headers=headers)
    assert response.status_code == 401
    (rejection,) = guard.queue.rejections()  # type: ignore[attr-defined]
    assert rejection.reason == "signature_mismatch"
    assert rejection.body_size == len(body)
    text = repr(rejection)
    assert "4242" not in text and "tok-123" not in text and SECRET not in text


def test_accepted_delivery_keeps_no_credential_headers(tmp_path: Path) -> None:
    """Authorization, Cookie and the signature never reach the store or the handler."""
    guard = contract_guard("cloudaipilot", SQLiteQueue(tmp_path / "q.db"))
    app = flask.Flask(__name__)
    app.add_url_rule("/webhook", "webhook", webhook(guard)(lambda d: None))
    headers = {
        **sign_request("cloudaipilot", SECRET, BODY),
        "Authorization": "Bearer tok-123",
        "Cookie": "s=1",
    }
    delivery_id = app.test_client().post("/webhook", data=BODY, headers=headers).get_json()["id"]
    stored = guard.queue.get(delivery_id)  # type: ignore[attr-defined]
    names = {name for name, _ in stored.headers}
    assert "x-cloudaipilot-delivery" in names
    assert not names & {"authorization", "cookie", "x-cloudaipilot-signature"}


def test_frozen_clock_is_what_timestamps_are_checked_against(tmp_path: Path) -> None:
    """The Guard's injected clock, not the wall clock, decides freshness."""
    guard = contract_guard("slack", SQLiteQueue(tmp_path / "q.db"))
    app = flask.Flask(__name__)
    app.add_url_rule("/webhook", "webhook", webhook(guard)(lambda d: None))
    headers = sign_request("slack", SECRET, BODY, timestamp=NOW - 10)
    assert app.test_client().post("/webhook", data=BODY, headers=headers).status_code == 200
