"""Starlette and FastAPI apps with WebhookGuardMiddleware around a contract Guard."""

from __future__ import annotations

import pytest

from tests.contract import PATH, ASGITransport, Transport
from webhook_guard.core.guard import Guard


def starlette_app(guard: Guard) -> Transport:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    from webhook_guard.adapters.asgi import WebhookGuardMiddleware

    app = Starlette()
    app.add_middleware(WebhookGuardMiddleware, guard=guard, path=PATH)
    return ASGITransport(app)


def fastapi_app(guard: Guard) -> Transport:
    pytest.importorskip("fastapi")
    from fastapi import FastAPI

    from webhook_guard.adapters.asgi import WebhookGuardMiddleware

    app = FastAPI()
    app.add_middleware(WebhookGuardMiddleware, guard=guard, path=PATH)
    return ASGITransport(app)


TRANSPORTS = {"starlette": starlette_app, "fastapi": fastapi_app}
