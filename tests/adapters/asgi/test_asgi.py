"""WebhookGuardMiddleware beyond the contract: pass-through, disconnects, lifespan, routing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.contract import CAP, SECRET, ASGITransport, contract_guard
from webhook_guard.adapters.asgi import WebhookGuardMiddleware
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard
from webhook_guard.exceptions import ConfigurationError
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import sign_request

Message = dict[str, Any]
BODY = b'{"event": "invoice.paid", "n": 1}'


def make_guard(tmp_path: Path, name: str = "q", **overrides: Any) -> Guard:
    return contract_guard("cloudaipilot", SQLiteQueue(tmp_path / f"{name}.db"), **overrides)


def signed(body: bytes = BODY, secret: str = SECRET) -> list[tuple[bytes, bytes]]:
    headers = sign_request("cloudaipilot", secret, body)
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


def http_scope(
    path: str = "/webhook", method: str = "POST", headers: Any = (), **extra: Any
) -> Message:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    scope.update(extra)
    return scope


def scripted(
    messages: list[Message], limit: int = 50
) -> tuple[Callable[[], Awaitable[Message]], list[int]]:
    """A receive that plays ``messages``, then waits like a connected client; counts its calls
    and fails fast past ``limit`` (a spinning caller would otherwise starve the loop for good)."""
    calls = [0]

    async def receive() -> Message:
        calls[0] += 1
        assert calls[0] <= limit, "receive() called in a loop: the event loop is being starved"
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive, calls


def body_messages(body: bytes, size: int = 10) -> list[Message]:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]


async def call(app: Any, scope: Message, receive: Any) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


def answer(sent: list[Message]) -> tuple[int, Any]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_pass_through_with_streaming_response_calls_receive_a_bounded_number_of_times(
    tmp_path: Path,
) -> None:
    """Behind a StreamingResponse (listening for disconnect, as under uvicorn) nothing spins."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def chunks() -> Any:
        for n in range(5):
            await asyncio.sleep(0.01)  # gives a spinning listener every chance to spin
            yield f"{n}".encode()

    async def stream(request: Any) -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/plain")

    starlette_app = Starlette(routes=[Route("/webhook", stream, methods=["POST"])])
    calls = [0]

    async def counting_app(scope: Message, receive: Any, send: Any) -> None:
        async def counted() -> Message:
            calls[0] += 1
            # Fail fast: a spinning receive would starve the loop, and no timeout could fire.
            assert calls[0] <= 50, "receive() called in a loop: the event loop is being starved"
            message: Message = await receive()
            return message

        await starlette_app(scope, counted, send)

    app = WebhookGuardMiddleware(counting_app, make_guard(tmp_path), pass_through=True)
    receive, _ = scripted([{"type": "http.request", "body": BODY, "more_body": False}])
    sent = asyncio.run(call(app, http_scope(headers=signed()), receive))
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"01234"
    assert calls[0] <= 3, calls


def test_pass_through_hands_the_exact_body_to_the_app_whose_answer_the_sender_gets(
    tmp_path: Path,
) -> None:
    """With pass_through the app reads the exact chunked bytes, sees the delivery id, answers."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    body = b'{"event": "x", "pad": "' + bytes(range(35, 127)) * 20 + b'"}'
    seen: dict[str, Any] = {}

    async def endpoint(request: Any) -> JSONResponse:
        seen["body"] = await request.body()
        seen["webhook_guard"] = request.scope["webhook_guard"]
        return JSONResponse({"mine": True}, status_code=202)

    guard = make_guard(tmp_path)
    app = WebhookGuardMiddleware(
        Starlette(routes=[Route("/webhook", endpoint, methods=["POST"])]), guard, pass_through=True
    )
    headers = signed(body)
    for expected in ("ok", "duplicate"):  # a sender's retry reaches the app again, marked
        receive, _ = scripted(body_messages(body, 100))
        status, payload = answer(asyncio.run(call(app, http_scope(headers=headers), receive)))
        assert (status, payload) == (202, {"mine": True})
        assert seen["body"] == body
        (stored,) = guard.queue.deliveries()  # type: ignore[attr-defined]
        assert seen["webhook_guard"] == {"status": expected, "id": stored.id}
    assert guard.queue.get(stored.id).body == body  # type: ignore[attr-defined]


def test_pass_through_never_passes_a_rejected_request(tmp_path: Path) -> None:
    """An unsigned request gets the guard's 400 and never reaches the downstream app."""

    async def downstream(scope: Message, receive: Any, send: Any) -> None:
        raise AssertionError("reached the app")

    app = WebhookGuardMiddleware(downstream, make_guard(tmp_path), pass_through=True)
    receive, _ = scripted([{"type": "http.request", "body": BODY}])
    assert answer(asyncio.run(call(app, http_scope(), receive))) == (
        400,
        {"error": "missing_signature"},
    )


def test_disconnect_mid_body_sends_nothing_and_stores_nothing(tmp_path: Path) -> None:
    """A client gone mid-body gets no answer; neither a delivery nor a rejection is stored."""
    guard = make_guard(tmp_path)
    app = WebhookGuardMiddleware(_unreachable_app, guard)
    messages = [*body_messages(BODY)[:2], {"type": "http.disconnect"}]
    receive, _ = scripted(messages)
    assert asyncio.run(call(app, http_scope(headers=signed()), receive)) == []
    assert guard.queue.deliveries() == []  # type: ignore[attr-defined]
    assert guard.queue.rejections() == []  # type: ignore[attr-defined]


def test_several_paths_each_use_their_own_guard(tmp_path: Path) -> None:
    """Each route verifies with its own secret and stores in its own queue."""
    first = make_guard(tmp_path, "a")
    second = Guard(
        "second-secret", queue=SQLiteQueue(tmp_path / "b.db"), worker="external", endpoint="b"
    )
    app = WebhookGuardMiddleware(_unreachable_app, routes={"/a": first, "/b": second})

    def post(path: str, secret: str) -> tuple[int, Any]:
        receive, _ = scripted([{"type": "http.request", "body": BODY}])
        return answer(
            asyncio.run(call(app, http_scope(path, headers=signed(secret=secret)), receive))
        )

    assert post("/a", SECRET)[0] == 200
    assert post("/b", "second-secret")[0] == 200
    assert post("/a", "second-secret") == (401, {"error": "signature_mismatch"})
    assert post("/b", SECRET) == (401, {"error": "signature_mismatch"})
    for guard in (first, second):
        assert len(guard.queue.deliveries()) == 1  # type: ignore[attr-defined]
        assert [r.path for r in guard.queue.rejections()] == [  # type: ignore[attr-defined]
            "/a" if guard is first else "/b"
        ]


def test_paths_match_below_root_path_like_starlette_routes(tmp_path: Path) -> None:
    """Under a Starlette Mount or ``uvicorn --root-path``, ``path`` is matched below root_path."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.routing import Mount

    guard = make_guard(tmp_path)
    mounted = Starlette(
        routes=[Mount("/hooks", app=WebhookGuardMiddleware(_unreachable_app, guard, "/github"))]
    )
    behind_proxy = WebhookGuardMiddleware(_unreachable_app, guard)
    for app, scope in [
        (mounted, http_scope("/hooks/github", headers=signed())),
        (behind_proxy, http_scope("/api/webhook", headers=signed(), root_path="/api")),
        (behind_proxy, http_scope("/webhook", headers=signed(), root_path="/api")),
    ]:
        receive, _ = scripted([{"type": "http.request", "body": BODY}])
        assert answer(asyncio.run(call(app, scope, receive)))[0] == 200, scope["path"]


async def drive_lifespan(app: Any, during: Callable[[], None]) -> list[str]:
    """Play a server's lifespan: startup, ``during()``, shutdown; return what the app sent."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    sent: list[str] = []
    replies: asyncio.Queue[str] = asyncio.Queue()

    async def send(message: Message) -> None:
        sent.append(message["type"])
        await replies.put(message["type"])

    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    )
    await inbox.put({"type": "lifespan.startup"})
    assert await asyncio.wait_for(replies.get(), 5) == "lifespan.startup.complete"
    during()
    await inbox.put({"type": "lifespan.shutdown"})
    assert await asyncio.wait_for(replies.get(), 5) == "lifespan.shutdown.complete"
    await asyncio.wait_for(task, 5)
    return sent


def worker_alive(guard: Guard) -> bool:
    return guard.worker_running


def test_lifespan_starts_and_stops_the_embedded_worker_of_a_starlette_app(tmp_path: Path) -> None:
    """Startup starts the embedded worker, shutdown stops it; the app's own lifespan still runs."""
    pytest.importorskip("starlette")
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        events.append("app startup")
        yield
        events.append("app shutdown")

    guard = make_guard(tmp_path, worker="embedded")
    app = Starlette(lifespan=lifespan)
    app.add_middleware(WebhookGuardMiddleware, guard=guard)
    alive: list[bool] = []
    asyncio.run(drive_lifespan(app, lambda: alive.append(worker_alive(guard))))
    assert alive == [True]
    assert not worker_alive(guard)
    assert events == ["app startup", "app shutdown"]


def test_lifespan_is_spoken_for_an_app_that_refuses_it_like_django(tmp_path: Path) -> None:
    """An app that raises on lifespan (like Django's) still gets the worker started and stopped."""

    async def django_like(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    guard = make_guard(tmp_path, worker="embedded")
    alive: list[bool] = []
    sent = asyncio.run(
        drive_lifespan(
            WebhookGuardMiddleware(django_like, guard), lambda: alive.append(worker_alive(guard))
        )
    )
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert alive == [True]
    assert not worker_alive(guard)


def test_an_app_failing_after_speaking_lifespan_still_fails(tmp_path: Path) -> None:
    """An error the app raises during its own lifespan is not hidden."""

    async def broken(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("startup failed")

    async def run() -> None:
        async def receive() -> Message:
            return {"type": "lifespan.startup"}

        async def send(message: Any) -> None:
            pass

        await WebhookGuardMiddleware(broken, make_guard(tmp_path))(
            {"type": "lifespan"}, receive, send
        )

    with pytest.raises(RuntimeError, match="startup failed"):
        asyncio.run(run())


def test_without_lifespan_the_first_accepted_delivery_starts_the_worker(tmp_path: Path) -> None:
    """Under ``--lifespan off`` the embedded worker starts lazily and runs the handler."""
    guard = make_guard(tmp_path, worker="embedded", clock=time.time)
    handled: list[bytes] = []

    @guard.on()
    def handler(delivery: Delivery) -> None:
        handled.append(delivery.body)

    app = WebhookGuardMiddleware(_unreachable_app, guard)
    receive, _ = scripted([{"type": "http.request", "body": BODY}])
    try:
        assert answer(asyncio.run(call(app, http_scope(headers=signed()), receive)))[0] == 200
        deadline = time.monotonic() + 10
        while not handled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert handled == [BODY]
    finally:
        guard.stop_worker()


@pytest.mark.parametrize(
    "scope",
    [
        http_scope("/other"),
        http_scope("/webhook/"),
        http_scope("/webhooks"),
        {"type": "websocket", "path": "/webhook", "headers": []},
    ],
    ids=["other path", "trailing slash", "prefix", "websocket"],
)
def test_other_requests_reach_the_app_untouched(tmp_path: Path, scope: Message) -> None:
    """Anything but an http request on a webhook path gets the very same scope, receive and send."""
    seen: list[tuple[Any, Any, Any]] = []

    async def downstream(s: Message, r: Any, snd: Any) -> None:
        seen.append((s, r, snd))

    async def receive() -> Message:
        raise AssertionError("the middleware read the body")

    async def send(message: Any) -> None:
        raise AssertionError("the middleware answered")

    asyncio.run(WebhookGuardMiddleware(downstream, make_guard(tmp_path))(scope, receive, send))
    assert len(seen) == 1 and seen[0][0] is scope and seen[0][1] is receive and seen[0][2] is send


@pytest.mark.parametrize(
    ("length", "status", "error"),
    [
        (str(CAP + 1), 413, "payload_too_large"),
        ("9" * 40, 413, "payload_too_large"),
        ("12abc", 400, "invalid_content_length"),
        ("-1", 400, "invalid_content_length"),
    ],
)
def test_bad_declared_length_is_refused_without_calling_receive(
    tmp_path: Path, length: str, status: int, error: str
) -> None:
    """A Content-Length over the cap (or not a number) is answered before any body is read."""
    guard = make_guard(tmp_path)

    async def receive() -> Message:
        raise AssertionError("receive() called")

    headers = [*signed(), (b"content-length", length.encode())]
    sent = asyncio.run(
        call(WebhookGuardMiddleware(_unreachable_app, guard), http_scope(headers=headers), receive)
    )
    assert answer(sent) == (status, {"error": error})
    assert [r.reason for r in guard.queue.rejections()] == [error]  # type: ignore[attr-defined]


def test_body_shorter_than_declared_is_refused(tmp_path: Path) -> None:
    """A body that ends before its Content-Length is a 400, not a verification of partial bytes."""
    headers = [*signed(), (b"content-length", str(len(BODY) + 5).encode())]
    receive, _ = scripted([{"type": "http.request", "body": BODY}])
    sent = asyncio.run(
        call(
            WebhookGuardMiddleware(_unreachable_app, make_guard(tmp_path)),
            http_scope(headers=headers),
            receive,
        )
    )
    assert answer(sent) == (400, {"error": "incomplete_body"})


def test_fastapi_route_with_a_pydantic_body_is_never_reached_unsigned(tmp_path: Path) -> None:
    """A FastAPI POST /webhook route with a model is never reached unsigned: 400, never 422."""
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Event(BaseModel):
        event: str
        amount: int

    reached: list[Event] = []
    app = FastAPI()
    app.add_middleware(WebhookGuardMiddleware, guard=make_guard(tmp_path), path="/webhook")

    @app.post("/webhook")
    def webhook(event: Event) -> dict[str, str]:
        reached.append(event)
        return {"route": "reached"}

    transport = ASGITransport(app)
    unsigned = transport.request(
        "POST", "/webhook", {"content-type": "application/json"}, b'{"garbage": true}'
    )
    assert (unsigned.status, unsigned.json()) == (400, {"error": "missing_signature"})
    headers = dict(sign_request("cloudaipilot", SECRET, BODY))
    accepted = transport.request("POST", "/webhook", headers, BODY)
    assert accepted.status == 200 and accepted.json()["status"] == "ok"
    assert reached == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"routes": {}},
        {"routes": {"webhook": None}},
        {"routes": {"/a": "not a guard"}},
        {"guard": "not a guard"},
        {"path": "no-slash"},
        {"with_routes": True},
    ],
)
def test_bad_configuration_is_refused_at_construction(
    tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    """Every wrong setting raises ConfigurationError when the middleware is built."""
    guard = make_guard(tmp_path)
    options = dict(kwargs)
    if options.pop("with_routes", False):
        options = {"guard": guard, "routes": {"/a": guard}}
    elif "path" in options:
        options["guard"] = guard
    elif options.get("routes") == {"webhook": None}:
        options["routes"] = {"webhook": guard}
    with pytest.raises(ConfigurationError):
        WebhookGuardMiddleware(_unreachable_app, **options)


async def _unreachable_app(scope: Message, receive: Any, send: Any) -> None:
    raise AssertionError(f"the app was called for {scope['type']} {scope.get('path')}")
