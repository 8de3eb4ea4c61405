"""The response contract as one table of cases, and the transports that replay it.

Every adapter runs the same ``CASES`` through a ``Transport`` (in-process WSGI or ASGI, or real
HTTP against a real server) and must answer the same statuses and bodies. Adding an adapter
means adding a transport factory in its test module, never a case.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from webhook_guard.core.guard import Guard
from webhook_guard.core.queue import Queue
from webhook_guard.core.schemes import HmacScheme, get_scheme
from webhook_guard.testing import sign_request

SECRET = "contract-secret"
OLD_SECRET = "contract-old-secret"
PATH = "/webhook"
NOW = 1_800_000_000  # the frozen clock every contract Guard uses
CAP = 4096  # max_body_bytes of every contract Guard: small, so oversize cases stay cheap


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


RawHeaders = list[tuple[str, str]]


class Transport:
    """Sends one request to an app and returns what came back. ``raw`` headers are added as
    given, duplicates and a lying Content-Length included (in-process transports only)."""

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        *,
        chunked: bool = False,
        raw: RawHeaders = (),  # type: ignore[assignment]
    ) -> Response:
        raise NotImplementedError


@dataclass(frozen=True)
class Case:
    """One row of the contract: build a request, expect a status and a JSON body."""

    name: str
    status: int
    error: str | None = None  # expected {"error": ...}; None for the 200 cases
    method: str = "POST"
    body: bytes = b'{"event": "invoice.paid", "n": 1}'
    chunked: bool = False
    sign: bool = True
    secret: str = SECRET
    timestamp_offset: int = 0
    tamper: bool = False
    send_first: bool = False  # send the same signed request once before (duplicate)
    queue_down: bool = False
    schemes: tuple[str, ...] = ()  # empty: every scheme
    extra_headers: dict[str, str] = field(default_factory=dict)
    # Content-Length says this many bytes more than the body has: a client that lies or hung
    # up. In-process transports only (a real server would wait for the missing bytes).
    length_lie: int = 0


CASES = [
    Case("valid", 200),
    Case(
        "valid chunked under the cap",
        200,
        chunked=True,
        body=b'{"event": "x", "pad": "' + b"a" * 3000 + b'"}',
    ),
    Case("valid non-UTF-8 body", 200, body=b"\xff\xfe\x00binary\x80"),
    # Bodies of accepted cases differ: the dedupe key of body-signing schemes is the body's
    # sha256, and a running sample app answers every case from one store.
    Case(
        "signed with the old secret while rotating",
        200,
        secret=OLD_SECRET,
        body=b'{"event": "invoice.paid", "n": 2}',
    ),
    Case("duplicate", 200, send_first=True, body=b'{"event": "invoice.paid", "n": 3}'),
    Case("tampered body", 401, "signature_mismatch", tamper=True),
    Case("wrong secret", 401, "signature_mismatch", secret="not-the-secret"),
    Case("unsigned", 400, "missing_signature", sign=False),
    Case(
        "stale timestamp",
        401,
        "timestamp_out_of_tolerance",
        timestamp_offset=-3600,
        schemes=("standard", "slack", "stripe"),
    ),
    Case(
        "future timestamp",
        401,
        "timestamp_out_of_tolerance",
        timestamp_offset=3600,
        schemes=("standard", "slack", "stripe"),
    ),
    Case("oversized by Content-Length", 413, "payload_too_large", body=b"x" * (CAP + 1)),
    Case("oversized chunked", 413, "payload_too_large", chunked=True, body=b"x" * (CAP * 4)),
    Case("wrong method", 405, "method_not_allowed", method="GET", body=b"", sign=False),
    # No framework's own answer (Flask's automatic OPTIONS, Werkzeug's HTML 405): ours, in JSON.
    *(
        Case(f"{verb} method", 405, "method_not_allowed", method=verb, body=b"", sign=False)
        for verb in ("OPTIONS", "TRACE", "PROPFIND")
    ),
    # The method is refused before the body is read, whatever its size, on every adapter.
    Case(
        "wrong method with an oversized body",
        405,
        "method_not_allowed",
        method="PUT",
        body=b"x" * (CAP * 2),
    ),
    Case("Content-Length that lies", 400, "incomplete_body", length_lie=10),
    Case("queue unavailable", 503, "queue_unavailable", queue_down=True),
]


def scheme_secret(scheme: str, raw: str) -> str:
    """``raw`` in the form ``scheme`` expects (Standard Webhooks wants ``whsec_<base64>``)."""
    if scheme == "standard":
        return "whsec_" + base64.b64encode(raw.encode()).decode()
    return raw


def contract_guard(scheme: str, queue: Queue | str, **overrides: Any) -> Guard:
    """The Guard every contract run uses: both secrets valid, frozen clock, small cap."""
    options: dict[str, Any] = {
        "scheme": scheme,
        "queue": queue,
        "worker": "external",
        "max_body_bytes": CAP,
        "clock": lambda: float(NOW),
    }
    options.update(overrides)
    return Guard([scheme_secret(scheme, SECRET), scheme_secret(scheme, OLD_SECRET)], **options)


def build_request(
    case: Case, guard: Guard | HmacScheme, now: int = NOW
) -> tuple[dict[str, str], bytes]:
    """Headers and body for ``case`` under ``guard``'s scheme, signed at ``now + offset``."""
    scheme = guard.scheme if isinstance(guard, Guard) else guard
    body = case.body
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if case.sign:
        secret = scheme_secret(scheme.name, case.secret)
        headers.update(sign_request(scheme, secret, body, timestamp=now + case.timestamp_offset))
    if case.tamper:
        body = body.replace(b"1", b"2")
    headers.update(case.extra_headers)
    return headers, body


def check(case: Case, response: Response, first_id: str | None = None) -> None:
    """Assert that ``response`` is what the contract says for ``case``."""
    assert response.status == case.status, (case.name, response.status, response.body)
    payload = response.json()
    if case.error is not None:
        assert payload == {"error": case.error}, (case.name, payload)
        if case.status == 503:
            assert response.headers.get("retry-after"), "503 must carry Retry-After"
        return
    expected_status = "duplicate" if case.send_first else "ok"
    assert payload["status"] == expected_status, (case.name, payload)
    assert isinstance(payload["id"], str) and payload["id"]
    if first_id is not None:
        assert payload["id"] == first_id, "a duplicate names the delivery first accepted"


def run_case(
    case: Case, guard: Guard | HmacScheme, transport: Transport, now: int = NOW
) -> Response:
    """Send ``case`` (twice for the duplicate case) and check the answer."""
    headers, body = build_request(case, guard, now)
    first_id = None
    if case.send_first:
        first = transport.request(case.method, PATH, headers, body, chunked=case.chunked)
        assert first.status == 200, first.body
        first_id = first.json()["id"]
    if case.length_lie:
        raw = [("content-length", str(len(body) + case.length_lie))]
        response = transport.request(case.method, PATH, headers, body, raw=raw)
    else:
        response = transport.request(case.method, PATH, headers, body, chunked=case.chunked)
    check(case, response, first_id)
    return response


def cases_for(scheme: str) -> list[Case]:
    return [c for c in CASES if not c.schemes or scheme in c.schemes]


def sample_app_env(scheme: str = "cloudaipilot") -> dict[str, str]:
    """Environment that makes a sample app answer like a contract Guard (both secrets, the cap)."""
    return {
        "WEBHOOK_SECRET": f"{scheme_secret(scheme, SECRET)},{scheme_secret(scheme, OLD_SECRET)}",
        "WEBHOOK_SCHEME": scheme,
        "WEBHOOK_GUARD_MAX_BODY_BYTES": str(CAP),
    }


def run_http_contract(transport: Transport, scheme: str = "cloudaipilot") -> list[Response]:
    """Every case a running sample app can answer (all but ``queue_down``), signed with the
    real clock; returns the responses so the caller can wait for the accepted deliveries."""
    real_scheme = get_scheme(scheme)
    return [
        run_case(case, real_scheme, transport, now=int(time.time()))
        for case in cases_for(scheme)
        if not case.queue_down and not case.length_lie
    ]


# -- transports ----------------------------------------------------------------------------


def _chunks(body: bytes, size: int = 1000) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)] or [b""]


class WSGITransport(Transport):
    """Calls a WSGI app as gunicorn does, chunked bodies included (``wsgi.input_terminated``)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        *,
        chunked: bool = False,
        raw: RawHeaders = (),  # type: ignore[assignment]
    ) -> Response:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            else:
                environ["HTTP_" + key] = value
        if chunked:
            environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        elif body or method == "POST":
            environ["CONTENT_LENGTH"] = str(len(body))
        for name, value in raw:
            key = name.upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
            # A WSGI server folds repeated headers into one comma-separated value (gunicorn
            # joins them with "," as Django's ASGI handler does).
            seen = environ.get(key) if name.lower() != "content-length" else None
            environ[key] = f"{seen},{value}" if seen is not None else value
        captured: dict[str, Any] = {}

        def start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            captured["status"] = int(status.split()[0])
            captured["headers"] = {k.lower(): v for k, v in response_headers}
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return Response(captured["status"], captured["headers"], data)


class ASGITransport(Transport):
    """Calls an ASGI app with a scripted ``receive``; chunked bodies arrive in several messages."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        *,
        chunked: bool = False,
        raw: RawHeaders = (),  # type: ignore[assignment]
    ) -> Response:
        return asyncio.run(self._request(method, path, headers, body, chunked, raw))

    async def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        chunked: bool,
        raw: RawHeaders,
    ) -> Response:
        raw_headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in raw]
        if chunked:
            raw_headers.append((b"transfer-encoding", b"chunked"))
        elif not any(k.lower() == "content-length" for k, _ in raw):
            raw_headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        declared = [v for k, v in raw if k.lower() == "content-length"]
        if not chunked and len(declared) == 1 and declared[0].strip().isdigit():
            # A real server frames the body by Content-Length: bytes past it belong to the next
            # request on the connection and never reach the app (as WSGI's stream does).
            body = body[: int(declared[0])]
        parts = _chunks(body) if chunked else [body]
        messages = [
            {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.sleep(3600)  # a real client waits; the app must not read past the end
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await asyncio.wait_for(self.app(scope, receive, send), timeout=30)
        start = next(m for m in sent if m["type"] == "http.response.start")
        data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return Response(
            start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, data
        )


class HTTPTransport(Transport):
    """Real HTTP over loopback with ``http.client``, chunked uploads included."""

    def __init__(self, host: str, port: int, timeout: float = 15.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes, *, chunked: bool = False
    ) -> Response:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            try:
                if chunked:
                    conn.request(
                        method, path, body=iter(_chunks(body)), headers=headers, encode_chunked=True
                    )
                else:
                    conn.request(
                        method, path, body=body if method != "GET" else None, headers=headers
                    )
            except (BrokenPipeError, ConnectionResetError):
                # The server answered (a 413 over the cap) and closed before the whole body was
                # sent: its answer is still there to read, as a careful sender reads it.
                pass
            reply = conn.getresponse()
            data = reply.read()
            return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, data)
        finally:
            conn.close()
