"""Starlette sample app: ``POST /webhook`` through webhook_guard's ASGI middleware.

    WEBHOOK_SECRET=change-me uvicorn sample_apps.starlette_app:app

The environment it reads is described in ``webhook_guard.demo.sample``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from webhook_guard.adapters.asgi import WebhookGuardMiddleware
from webhook_guard.demo.sample import sample_guard

guard = sample_guard()  # the sample handler is on it; the middleware only receives


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"app": "webhook_guard Starlette sample", "webhook": "POST /webhook"})


app = Starlette(routes=[Route("/", index)])
app.add_middleware(WebhookGuardMiddleware, guard=guard, path="/webhook")
