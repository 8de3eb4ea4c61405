"""FastAPI bench app: ``POST /bare`` and ``POST /naive`` (``_naive.py``, on the event loop) are
routes, ``/webhook`` is answered by webhook_guard's
ASGI middleware (no route is declared for it, as the docs say).

    uvicorn fastapi_app:app --http httptools --loop uvloop     (run from benchmarks/apps)
"""

from __future__ import annotations

from _guard import OK, bench_guard
from _naive import naive_receive
from fastapi import FastAPI, Request, Response

from webhook_guard.adapters.asgi import WebhookGuardMiddleware

guard = bench_guard()
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/bare")
async def bare(request: Request) -> Response:
    await request.body()
    return Response(OK, media_type="application/json")


@app.post("/naive")
async def naive(request: Request) -> Response:
    body = await request.body()
    status = naive_receive(request.headers.get("X-CloudAIPilot-Signature"), body)
    return Response(OK, status_code=status, media_type="application/json")


app.add_middleware(WebhookGuardMiddleware, guard=guard, path="/webhook")
