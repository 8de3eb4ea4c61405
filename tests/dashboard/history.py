"""A real delivery history for the dashboard tests: a Guard and a Worker on a SQLite file.

``build_history`` receives signed deliveries through ``Guard.receive`` (and a few forged ones,
which are rejected), then lets a ``Worker`` run the handler, so every row in the database was
written by the same code that writes it in production.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webhook_guard.core.guard import Guard
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.exceptions import PermanentFailure, Retry
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import FrozenClock, sign_request
from webhook_guard.worker import Worker

SECRET = "dashboard-secret"
SCRIPT = "<script>alert('body')</script>"
HEADER_SCRIPT = "<script>alert('header')</script>"


@dataclass
class History:
    """Ids by what happened to them; ``db`` is the SQLite file."""

    db: Path
    processed: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    rejected: int = 0
    hostile: str = ""  # a dead delivery whose body and a header hold a <script>

    def queue(self) -> SQLiteQueue:
        return SQLiteQueue(self.db)


def _handler(delivery: Any) -> None:
    payload = delivery.json()
    if payload.get("fail") == "always":
        raise PermanentFailure("the order service says this order does not exist")
    if payload.get("fail") == "later":
        raise Retry(after=3600, reason="the order service is busy (429)")
    if payload.get("fail") == "crash":
        raise KeyError("customer_id")


def build_history(db: Path, *, now: float, spread: float = 0.0) -> History:
    """Processed, dead, retrying, queued deliveries and rejected requests, received between
    ``now - spread`` and ``now`` (oldest first), on two endpoints."""
    clock = FrozenClock(now - spread)
    history = History(db)
    plan: list[tuple[str, str, dict[str, Any]]] = [
        ("shop", "processed", {"event": "order.created", "order": 1}),
        ("shop", "processed", {"event": "order.paid", "order": 1}),
        ("billing", "processed", {"event": "invoice.paid", "invoice": "in_1"}),
        ("shop", "dead", {"event": "order.refunded", "order": 7, "fail": "always"}),
        ("billing", "rejected", {"event": "invoice.paid", "invoice": "in_forged"}),
        ("shop", "processed", {"event": "order.created", "order": 2}),
        ("billing", "retrying", {"event": "invoice.failed", "invoice": "in_2", "fail": "later"}),
        ("shop", "hostile", {"event": "order.note", "note": SCRIPT, "fail": "crash"}),
        ("shop", "processed", {"event": "order.paid", "order": 2}),
        ("shop", "rejected", {"event": "order.created", "order": 666}),
        ("billing", "processed", {"event": "invoice.created", "invoice": "in_3"}),
        ("shop", "processed", {"event": "order.created", "order": 3}),
    ]
    step = spread / (len(plan) + 1)  # the last arrival, the queued one, is at ``now``
    guards: dict[str, Guard] = {}
    for endpoint in ("shop", "billing"):
        guard = Guard(
            SECRET,
            queue=SQLiteQueue(db),
            endpoint=endpoint,
            worker="external",
            clock=clock,
            retry=RetryPolicy(max_attempts=2, base_seconds=0.0),
        )
        guard.add_handler(_handler)
        guards[endpoint] = guard
    for endpoint, kind, payload in plan:
        clock.advance(step)
        body = json.dumps(payload).encode()
        headers = sign_request("cloudaipilot", SECRET, body)
        headers["User-Agent"] = "ShopSender/2.1"
        if kind == "hostile":
            headers["X-Note"] = HEADER_SCRIPT
        if kind == "rejected":
            headers = {"X-CloudAIPilot-Signature": "sha256=" + "0" * 64}
            history.rejected += 1
        outcome = guards[endpoint].receive("POST", f"/hooks/{endpoint}", headers, body)
        if kind == "rejected":
            continue
        delivery_id = json.loads(outcome.body)["id"]
        worker = Worker(guards[endpoint])
        while worker.run_once():  # a crash is retried at once, then dead
            pass
        if kind == "hostile":
            history.hostile = delivery_id
            history.dead.append(delivery_id)
        else:
            getattr(history, kind).append(delivery_id)
    # One more, left for a worker that never came: queued.
    clock.advance(step)
    body = b'{"event": "order.created", "order": 4}'
    outcome = guards["shop"].receive(
        "POST", "/hooks/shop", sign_request("cloudaipilot", SECRET, body), body
    )
    history.queued.append(json.loads(outcome.body)["id"])
    for guard in guards.values():
        queue = guard.queue
        assert isinstance(queue, SQLiteQueue)
        queue.close()
    return history


@dataclass
class WSGIResult:
    status: int
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def call_wsgi(
    app: Callable[..., Iterable[bytes]],
    method: str = "GET",
    path: str = "/",
    *,
    query: str = "",
    script_name: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    remote_addr: str = "127.0.0.1",
) -> WSGIResult:
    """Call a WSGI app in-process the way a server would."""
    environ: MutableMapping[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8089",
        "REMOTE_ADDR": remote_addr,
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "HTTP_HOST": "127.0.0.1:8089",
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    started: list[Any] = []
    chunks = app(
        environ, lambda status, response_headers: started.extend([status, response_headers])
    )
    return WSGIResult(int(started[0].split()[0]), list(started[1]), b"".join(chunks).decode())
