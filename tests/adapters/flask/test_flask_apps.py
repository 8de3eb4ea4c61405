"""Flask apps as users build them: handlers inside the app context, one Guard per app, the
consumer started by any request, and the worker finding the app (Flask's test client)."""

from __future__ import annotations

import gc
import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from tests.contract import SECRET  # noqa: E402
from tests.servers import wait_until  # noqa: E402
from webhook_guard.adapters.flask import (  # noqa: E402
    WebhookGuard,
    bind_guard,
    prepare_worker,
    signals_available,
    webhook,
)
from webhook_guard.core.delivery import Delivery  # noqa: E402
from webhook_guard.core.guard import Guard  # noqa: E402
from webhook_guard.exceptions import ConfigurationError  # noqa: E402
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


@pytest.mark.skipif(
    not signals_available(), reason="Flask 2.2 without blinker: the webhook view starts it"
)
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
    with pytest.raises(ConfigurationError, match=r"hooks\.guard_for\(app\)"):
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


def test_any_request_starts_the_extensions_consumer(tmp_path: Path) -> None:
    """With the extension, GET /health starts the consumer on every Flask version (a
    before_request hook where Flask has no signals), and init_app started nothing."""
    app = flask.Flask("ext-shop")
    app.config.update(WEBHOOK_GUARD_SECRET=SECRET, WEBHOOK_GUARD_DB=str(tmp_path / "q.db"))
    app.add_url_rule("/health", "health", lambda: "ok")
    guard = WebhookGuard(app).guard
    try:
        assert not guard.worker_running, "init_app must not start a thread (--preload forks)"
        assert app.test_client().get("/health").status_code == 200
        assert guard.worker_running
    finally:
        guard.stop_worker()


def blueprint_with(guard: Guard, seen: list[str]) -> Any:
    """A blueprint whose decorated route serves ``guard`` (what an app factory registers)."""
    blueprint = flask.Blueprint("hooks", __name__)

    @blueprint.route("/webhook")
    @webhook(guard)
    def on_delivery(delivery: Delivery) -> None:
        seen.append(flask.current_app.name)

    return blueprint


def test_a_guard_served_by_two_live_apps_is_a_configuration_error(tmp_path: Path) -> None:
    """One Guard behind two live apps cannot run its handlers in both contexts: the second
    app's webhook answers 500 and accepts nothing, and the worker refuses to start."""
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), worker="external")
    blueprint = blueprint_with(guard, [])
    first, second = flask.Flask("first"), flask.Flask("second")
    first.register_blueprint(blueprint)
    second.register_blueprint(blueprint)
    assert post(first).status_code == 200
    assert post(second).status_code == 500
    assert len(guard.queue.deliveries()) == 1  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match=r"two Flask apps \('first' and 'second'\)"):
        bind_guard(second, guard)
    module = types.ModuleType("both")
    module.first, module.second = first, second  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="two Flask apps"):
        prepare_worker([guard], [module])


def test_a_module_level_guard_follows_the_app_factory(tmp_path: Path) -> None:
    """An app factory builds app after app around one module-level Guard: once the old app is
    gone, the new one serves it and handlers run in the new app's context."""
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), worker="external")
    seen: list[str] = []
    blueprint = blueprint_with(guard, seen)

    def create_app(name: str) -> Any:
        app = flask.Flask(name)
        app.register_blueprint(blueprint)
        return app

    assert post(create_app("old")).status_code == 200
    gc.collect()
    new = create_app("new")
    assert post(new, body=json.dumps({"event": "invoice.paid", "n": 2}).encode()).status_code == 200
    Worker(guard).drain(timeout=10)
    assert seen == ["new", "new"]


def test_the_extension_follows_the_app_factory_on_one_store(tmp_path: Path) -> None:
    """A module-level extension and create_app() called again on the same database: the old
    app's Guard is gone with it, so its endpoint is free for the new app's Guard."""
    hooks = WebhookGuard()

    def create_app() -> Any:
        app = flask.Flask("factory")
        app.config.update(
            WEBHOOK_GUARD_SECRET=SECRET,
            WEBHOOK_GUARD_DB=str(tmp_path / "q.db"),
            WEBHOOK_GUARD_WORKER="external",
        )
        hooks.init_app(app)
        return app

    create_app()
    app = create_app()
    assert hooks.guard is hooks.guard_for(app)
    assert post(app).status_code == 200


def test_two_extensions_on_one_app_and_store_keep_their_deliveries_apart(tmp_path: Path) -> None:
    """Two extensions on one app (the second reads GITHUB_WEBHOOK_* keys) and one database:
    their endpoints default to their paths, and each delivery runs only its own handler."""
    app = flask.Flask("two")
    app.config.update(
        WEBHOOK_GUARD_SECRET=SECRET,
        WEBHOOK_GUARD_PATH="/orders",
        WEBHOOK_GUARD_DB=str(tmp_path / "q.db"),
        WEBHOOK_GUARD_WORKER="external",
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_WEBHOOK_PATH="/github",
        GITHUB_WEBHOOK_DB=str(tmp_path / "q.db"),
        GITHUB_WEBHOOK_WORKER="external",
    )
    orders, github = WebhookGuard(), WebhookGuard(prefix="GITHUB_WEBHOOK_")
    ran: list[tuple[str, str]] = []
    orders.on()(lambda delivery: ran.append(("orders", delivery.id)))
    github.on()(lambda delivery: ran.append(("github", delivery.id)))
    orders.init_app(app)
    github.init_app(app)
    assert (orders.guard.endpoint, github.guard.endpoint) == ("/orders", "/github")
    sent = [("orders", post(app, "/orders").get_json()["id"])]
    sent.append(("github", post(app, "/github").get_json()["id"]))
    Worker(orders.guard, github.guard).drain(timeout=10)
    assert sorted(ran) == sorted(sent)


def test_two_apps_on_one_store_need_their_own_endpoint(tmp_path: Path) -> None:
    """Two apps with the extension on one database and the same path collide (a clear
    ConfigurationError); WEBHOOK_GUARD_ENDPOINT tells them apart."""
    hooks = WebhookGuard()
    apps = [flask.Flask(name) for name in ("a", "b")]
    for app in apps:
        app.config.update(WEBHOOK_GUARD_SECRET=SECRET, WEBHOOK_GUARD_DB=str(tmp_path / "q.db"))
    hooks.init_app(apps[0])
    with pytest.raises(ConfigurationError, match="two Guards with endpoint '/webhook'"):
        hooks.init_app(apps[1])
    apps[1].config["WEBHOOK_GUARD_ENDPOINT"] = "b-webhook"
    assert hooks.init_app(apps[1]).endpoint == "b-webhook"


def test_the_worker_finds_an_app_defined_in_another_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`webhook-guard worker shop.hooks:guard` where the app lives in another loaded module:
    prepare_worker looks there too."""
    seen: list[str] = []
    app, guard = decorated_app(tmp_path, seen)
    guard.receive("POST", "/webhook", sign_request("cloudaipilot", SECRET, BODY), BODY)
    hooks_module, app_module = types.ModuleType("shop_hooks"), types.ModuleType("shop_app")
    hooks_module.guard = guard  # type: ignore[attr-defined]
    app_module.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shop_app", app_module)
    prepare_worker([guard], [hooks_module])
    Worker(guard).drain(timeout=10)
    assert seen == ["acme"]


def test_the_worker_says_when_no_app_serves_a_guard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Guard no Flask app serves is named in a warning (its handlers have no app context)."""
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), worker="external", endpoint="lonely")
    with caplog.at_level(logging.WARNING, logger="webhook_guard"):
        prepare_worker([guard], [types.ModuleType("empty")])
    assert "no Flask app found serving <Guard endpoint='lonely'" in caplog.text


def test_a_webhook_request_starts_the_consumer_on_every_flask(tmp_path: Path) -> None:
    """Where Flask has no signals (2.2 without blinker) the webhook's own request starts the
    consumer, and its handler runs there in the app context."""
    seen: list[str] = []
    app, guard = decorated_app(tmp_path, seen, worker="embedded")
    try:
        assert post(app).status_code == 200
        assert guard.worker_running
        assert wait_until(lambda: seen == ["acme"], limit=10)
    finally:
        guard.stop_worker()


@pytest.mark.skipif(not signals_available(), reason="Flask 2.2 without blinker: Werkzeug's 405")
@pytest.mark.parametrize("method", ["BREW", "FOO"])
def test_a_method_no_rule_lists_gets_the_json_405_and_is_recorded(
    tmp_path: Path, method: str
) -> None:
    """An invented method on a webhook path: the contract's JSON 405 with Allow: POST (not
    Werkzeug's HTML page), recorded in the history; other paths keep Flask's own answer."""
    seen: list[str] = []
    app, guard = decorated_app(tmp_path, seen)
    reply = app.test_client().open("/webhook", method=method)
    assert reply.status_code == 405
    assert reply.get_json() == {"error": "method_not_allowed"}
    assert reply.headers["Allow"] == "POST"
    assert [r.reason for r in guard.queue.rejections()] == ["method_not_allowed"]  # type: ignore[attr-defined]
    other = app.test_client().open("/health", method=method)
    assert other.status_code == 405 and other.get_json(silent=True) is None
