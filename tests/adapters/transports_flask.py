"""Flask apps around a contract Guard: the decorator form and the extension form."""

from __future__ import annotations

import pytest

from tests.contract import PATH, Transport, WSGITransport
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard


def flask_decorator(guard: Guard) -> Transport:
    flask = pytest.importorskip("flask")
    from webhook_guard.adapters.flask import webhook

    app = flask.Flask(__name__)

    @app.route(PATH)
    @webhook(guard)
    def on_delivery(delivery: Delivery) -> None:
        pass

    return WSGITransport(app)


def flask_extension(guard: Guard) -> Transport:
    flask = pytest.importorskip("flask")
    from webhook_guard.adapters.flask import WebhookGuard

    app = flask.Flask(__name__)
    app.config["WEBHOOK_GUARD_PATH"] = PATH
    WebhookGuard(app, guard=guard)
    return WSGITransport(app)


TRANSPORTS = {"flask": flask_decorator, "flask-extension": flask_extension}
