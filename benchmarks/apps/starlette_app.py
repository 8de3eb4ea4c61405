"""Starlette bench app: ``POST /bare`` is a route, ``/webhook`` is answered by webhook_guard's
ASGI middleware (added with ``app.add_middleware``, as the docs show).

    uvicorn starlette_app:app --http httptools --loop uvloop     (run from benchmarks/apps)
"""

from __future__ import annotations

from _guard import OK, bench_guard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhook_guard.adapters.asgi import WebhookGuardMiddleware

guard = bench_guard()


async def bare(request: Request) -> Response:
    await request.body()
    return Response(OK, media_type="application/json")


app = Starlette(routes=[Route("/bare", bare, methods=["POST"])])
app.add_middleware(WebhookGuardMiddleware, guard=guard, path="/webhook")
