"""Pure ASGI middleware: Starlette, FastAPI, Django's ASGI app, or any ASGI app.

::

    guard = Guard(os.environ["WEBHOOK_SECRET"])
    app = FastAPI()                     # or Starlette()
    app.add_middleware(WebhookGuardMiddleware, guard=guard, path="/webhook")

    application = WebhookGuardMiddleware(get_asgi_application(), guard=guard)   # Django ASGI
    app = WebhookGuardMiddleware(app, routes={"/hooks/github": gh, "/hooks/stripe": st})

For an http request whose path (below any ``root_path``, as Starlette routes match) is exactly
a webhook path, the middleware reads the raw bytes from ``receive`` (Content-Length checked
first, chunked bodies counted as they arrive), verifies, enqueues durably and answers per the
response contract. Everything else reaches the app untouched.

FastAPI: use the middleware, not a route dependency. It answers before routing, so an unsigned
request never reaches a route that declares a pydantic body (which would answer 422 with the
validation details before any dependency could refuse it). Do not declare a route for the webhook
path; handlers run in the worker (``@guard.on(...)``), after the sender got its 200.

``pass_through=True`` hands each accepted request (new or duplicate) to the app, body intact,
instead of answering 200. The delivery is already durably enqueued (its handlers will run) when
the app runs, and the app's answer is what the sender gets: an app that fails makes the sender
retry, and the retry reaches the app again as a duplicate. ``scope["webhook_guard"]`` holds
``{"status": "ok" | "duplicate", "id": ...}``. Rejected requests never reach the app.

The worker of each ``embedded`` Guard starts on ``lifespan.startup`` and stops on
``lifespan.shutdown``; apps that refuse lifespan (Django) get it spoken for them. Without
lifespan (``--lifespan off``) the worker starts on the first accepted delivery.

This module imports no web framework.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from webhook_guard.core.body import parse_content_length, read_asgi_body
from webhook_guard.core.guard import Guard, Outcome
from webhook_guard.core.request import answer_async
from webhook_guard.exceptions import ConfigurationError

__all__ = ["WebhookGuardMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# The wrapped app: any ASGI 3 callable, whatever Scope type it declares (Django: dict).
ASGIApp = Callable[..., Awaitable[None]]
HeaderList = list[tuple[str, str]]

DEFAULT_PATH = "/webhook"
SCOPE_KEY = "webhook_guard"
logger = logging.getLogger("webhook_guard")


class WebhookGuardMiddleware:
    """Answers webhook paths per the response contract; passes everything else to ``app``.

    Args:
        app: the ASGI app to wrap.
        guard: the Guard of the single webhook path ``path``.
        path: the request path served (default ``/webhook``), below any ``root_path``.
        routes: several paths, each with its own Guard, instead of ``guard`` and ``path``.
        pass_through: after a durable enqueue, let ``app`` answer instead of answering 200.
    """

    def __init__(
        self,
        app: ASGIApp,
        guard: Guard | None = None,
        path: str = DEFAULT_PATH,
        *,
        routes: Mapping[str, Guard] | None = None,
        pass_through: bool = False,
    ) -> None:
        if not callable(app):
            raise ConfigurationError("WebhookGuardMiddleware: app must be an ASGI application")
        self.app = app
        self.routes = _routes(guard, path, routes)
        self.pass_through = bool(pass_through)
        unique = {id(g): g for g in self.routes.values()}
        self._embedded = [g for g in unique.values() if g.config.worker == "embedded"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(scope, receive, send)
        guard = self.routes.get(_route_path(scope)) if scope["type"] == "http" else None
        if guard is None:
            return await self.app(scope, receive, send)
        request = _ASGIRequest(scope, receive)
        outcome = await answer_async(guard, request)
        if outcome is None:
            return  # nobody is left to answer, and nothing was stored
        if not self.pass_through or outcome.status != 200:
            return await _render(send, outcome)
        scope = dict(scope, **{SCOPE_KEY: json.loads(outcome.body)})
        await self.app(scope, _replay(request.body, receive), send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        app_spoke = False

        async def watched_receive() -> Message:
            nonlocal app_spoke
            app_spoke = True
            message = await receive()
            await self._on_lifespan(message)
            return message

        try:
            await self.app(scope, watched_receive, send)
        except Exception:
            if app_spoke:
                raise
            logger.debug("the app refused lifespan; webhook_guard speaks it", exc_info=True)
        if app_spoke:
            return
        # The app (e.g. Django) does not do lifespan: answer it ourselves, so our worker still
        # starts and stops with the server.
        while True:
            message = await receive()
            await self._on_lifespan(message)
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _on_lifespan(self, message: Message) -> None:
        # Secondary work: a worker that cannot start must not stop the server from serving
        # (accepted deliveries are durable either way); it is logged, as on the lazy path.
        loop = asyncio.get_running_loop()
        for guard in self._embedded:
            try:
                if message["type"] == "lifespan.startup":
                    guard.ensure_worker()  # only starts a daemon thread
                elif message["type"] == "lifespan.shutdown":
                    await loop.run_in_executor(None, guard.stop_worker)  # joins the thread
            except Exception:
                logger.exception("webhook_guard: %s of %r's worker failed", message["type"], guard)


def _routes(guard: Guard | None, path: str, routes: Mapping[str, Guard] | None) -> dict[str, Guard]:
    name = "WebhookGuardMiddleware"
    if routes is not None and (guard is not None or path != DEFAULT_PATH):
        raise ConfigurationError(f"{name}: pass guard= and path=, or routes=, not both")
    if routes is None:
        if guard is None:
            raise ConfigurationError(f"{name} needs guard= (or routes={{path: guard}})")
        routes = {path: guard}
    if not routes:
        raise ConfigurationError(f"{name}: routes= is empty")
    for route, route_guard in routes.items():
        if not isinstance(route, str) or not route.startswith("/"):
            raise ConfigurationError(f"{name}: path {route!r} must start with '/'")
        if not isinstance(route_guard, Guard):
            raise ConfigurationError(f"{name}: {route!r} maps to {route_guard!r}, not a Guard")
    return dict(routes)


class _ASGIRequest:
    """The core's accessors (``core.request.AsyncWebRequest``) over an ASGI http scope."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        client = scope.get("client")
        self.remote_addr: str | None = client[0] if client else None
        self.headers: HeaderList = _folded(scope["headers"])
        self.body = b""  # what read_body read, for pass_through

    async def read_body(self, cap: int) -> bytes:
        """Refused by declared length before any read; chunked bodies counted as they come."""
        headers = self.headers
        chunked = any(k == "transfer-encoding" and "chunked" in v.lower() for k, v in headers)
        length = next((v for k, v in headers if k == "content-length"), None)
        declared = None if chunked else parse_content_length(length, cap)
        self.body = await read_asgi_body(self._receive, declared, cap)
        return self.body


def _folded(raw: list[tuple[bytes, bytes]]) -> HeaderList:
    """The headers as WSGI servers (and Django under ASGI) present them: a repeated header is
    one comma-joined value, so every adapter verifies the same request the same way."""
    folded: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        folded[key] = f"{folded[key]},{text}" if key in folded else text
    return list(folded.items())


def _route_path(scope: Scope) -> str:
    """The path below ``root_path`` (a Starlette ``Mount``, ``uvicorn --root-path``), as
    Starlette's router matches it, so ``path="/webhook"`` means what a route would mean."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) :].startswith("/"):
        return str(path[len(root) :])
    return str(path)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, then the real ``receive``: a replay that kept answering an empty
    ``http.request`` would never suspend, and a StreamingResponse waiting for
    ``http.disconnect`` would spin the event loop forever."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _render(send: Send, outcome: Outcome) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in outcome.headers]
    if outcome.close_connection:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": outcome.body})
