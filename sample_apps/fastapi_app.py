"""FastAPI sample app: ``POST /webhook`` through webhook_guard's ASGI middleware.

    WEBHOOK_SECRET=change-me uvicorn sample_apps.fastapi_app:app

The middleware answers before routing, so no route is declared for ``/webhook`` (a route with a
pydantic body would answer 422 to unsigned requests). The environment it reads is described in
``webhook_guard.demo.sample``.
"""

from __future__ import annotations

from fastapi import FastAPI

from webhook_guard.adapters.asgi import WebhookGuardMiddleware
from webhook_guard.demo.sample import sample_guard

guard = sample_guard()  # the sample handler is on it; the middleware only receives
app = FastAPI(title="webhook_guard FastAPI sample")
app.add_middleware(WebhookGuardMiddleware, guard=guard, path="/webhook")


@app.get("/")
def index() -> dict[str, str]:
    return {"app": "webhook_guard FastAPI sample", "webhook": "POST /webhook"}
