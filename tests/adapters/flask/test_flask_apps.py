"""Flask apps as users build them: handlers inside the app context, one Guard per app, the
consumer started by any request, and the worker finding the app (Flask's test client)."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from tests.contract import SECRET  # noqa: E402
from webhook_guard.adapters.flask import WebhookGuard, prepare_worker, webhook  # noqa: E402
from webhook_guard.core.delivery import Delivery  # noqa: E402
from webhook_guard.core.guard import Guard  # noqa: E402
from webhook_guard.testing import sign_request  # noqa: E402
from webhook_guard.worker import Worker  # noqa: E402

BODY = json.dumps({"event": "invoice.paid"}).encode()


def post(app: Any, path: str = "/webhook", body: bytes = BODY) -> Any:
    """A signed delivery through the test client."""
    return app.test_client().post(
        path, data=body, headers=sign_request("cloudaipilot", SECRET, body)
    )


def decorated_app(tmp_path: Path, seen: list[str], **options: Any) -> tuple[Any, Guard]:
    """An app with one decorated webhook route whose handler reads current_app.config."""
    options.setdefault("worker", "external")
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), **options)
    app = flask.Flask("shop")
    app.config["SHOP_NAME"] = "acme"

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.route("/webhook")
    @webhook(guard)
    def on_delivery(delivery: Delivery) -> None:
        seen.append(flask.current_app.config["SHOP_NAME"])

    return app, guard


def test_a_handler_runs_inside_its_apps_context(tmp_path: Path) -> None:
    """current_app works in a handler run by the worker, after the app served a request."""
    seen: list[str] = []
    app, guard = decorated_app(tmp_path, seen)
    assert post(app).status_code == 200
    Worker(guard).drain(timeout=10)
    assert seen == ["acme"]
    assert guard.queue.deliveries()[0].status == "processed"  # type: ignore[attr-defined]


def test_the_worker_finds_the_app_in_the_module_it_imports(tmp_path: Path) -> None:
    """prepare_worker (what `webhook-guard worker` calls) binds the app found in the module, so
    a process that never served a request runs handlers in the app context too."""
    seen: list[str] = []
    app, guard = decorated_app(tmp_path, seen)
    # The delivery arrives without any Flask request in this process (another process's).
    guard.receive("POST", "/webhook", sign_request("cloudaipilot", SECRET, BODY), BODY)
    module = types.ModuleType("shop")
    module.app = app  # type: ignore[attr-defined]
    prepare_worker([guard], [module])
    Worker(guard).drain(timeout=10)
    assert seen == ["acme"]


def test_any_request_starts_the_consumer(tmp_path: Path) -> None:
    """The first request of ANY path (here GET /health) starts the store's embedded consumer, so
    a backlog runs without a new webhook."""
    seen: list[str] = []
    app, guard = decorated_app(tmp_path, seen, worker="embedded")
    try:
        assert not guard.worker_running
        assert app.test_client().get("/health").status_code == 200
        assert guard.worker_running
    finally:
        guard.stop_worker()


def test_each_app_gets_its_own_guard_from_its_config(tmp_path: Path) -> None:
    """init_app(app2) builds app2's Guard from app2's config (secret, database); handlers
    registered on the extension run for both; `hooks.guard` refuses to guess between them."""
    hooks = WebhookGuard()
    ran: list[tuple[str, str]] = []

    @hooks.on("invoice.*")
    def paid(delivery: Delivery) -> None:
        ran.append((flask.current_app.name, delivery.endpoint))

    apps = []
    for name in ("first", "second"):
        app = flask.Flask(name)
        app.config.update(
            WEBHOOK_GUARD_SECRET=SECRET,
            WEBHOOK_GUARD_DB=str(tmp_path / f"{name}.db"),
            WEBHOOK_GUARD_WORKER="external",
        )
        hooks.init_app(app)
        apps.append(app)
    first, second = (hooks.guard_for(app) for app in apps)
    assert first is not second
    assert first.queue.path != second.queue.path  # type: ignore[attr-defined]
    assert apps[1].extensions["webhook_guard"].guard is second
    with pytest.raises(RuntimeError, match="guard_for"):
        _ = hooks.guard
    for app in apps:
        assert post(app).status_code == 200
    Worker(first).drain(timeout=10)
    Worker(second).drain(timeout=10)
    assert sorted(ran) == [("first", "/webhook"), ("second", "/webhook")]


def test_an_async_handler_is_awaited_in_the_app_context(tmp_path: Path) -> None:
    """`async def` handlers run too, with current_app available."""
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), worker="external")
    app = flask.Flask("async-shop")
    seen: list[str] = []

    @app.route("/webhook")
    @webhook(guard)
    async def on_delivery(delivery: Delivery) -> None:
        seen.append(flask.current_app.name)

    assert post(app).status_code == 200
    Worker(guard).drain(timeout=10)
    assert seen == ["async-shop"]
