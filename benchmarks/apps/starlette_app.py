"""Starlette bench app: ``POST /bare`` and ``POST /naive`` (``_naive.py``, called on the event
loop as a hand-written ``async def`` handler would) are routes, ``/webhook`` is answered by
webhook_guard's ASGI middleware (added with ``app.add_middleware``, as the docs show).

    uvicorn starlette_app:app --http httptools --loop uvloop     (run from benchmarks/apps)
"""

from __future__ import annotations

from _guard import OK, bench_guard
from _naive import naive_receive
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhook_guard.adapters.asgi import WebhookGuardMiddleware

guard = bench_guard()


async def bare(request: Request) -> Response:
    await request.body()
    return Response(OK, media_type="application/json")


async def naive(request: Request) -> Response:
    body = await request.body()
    status = naive_receive(request.headers.get("X-CloudAIPilot-Signature"), body)
    return Response(OK, status_code=status, media_type="application/json")


app = Starlette(
    routes=[Route("/bare", bare, methods=["POST"]), Route("/naive", naive, methods=["POST"])]
)
app.add_middleware(WebhookGuardMiddleware, guard=guard, path="/webhook")
