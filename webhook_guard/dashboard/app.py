"""``Dashboard``: the delivery-history pages as a WSGI and an ASGI app, closed unless authorized.

::

    dashboard = Dashboard(SQLiteQueue("webhook_guard.db"), authorize=lambda r: r.native...)
    dashboard.wsgi      # a WSGI app (Flask/Django helpers, DispatcherMiddleware, wsgiref)
    dashboard.asgi      # an ASGI app (Starlette/FastAPI ``app.mount(...)``)

Routes, below wherever it is mounted (``SCRIPT_NAME`` / ASGI ``root_path``):

- ``GET /``: the list (query ``status``, ``endpoint``, ``since``, ``limit``);
- ``GET /delivery/<id>``: one delivery;
- ``POST /delivery/<id>/replay``: ``queue.replay([id])``, then 303 back.

Safety, in order of what a request meets:

1. ``authorize(request)`` must return exactly ``True``; anything else (False, None, an
   exception, a coroutine from an async function) answers 403. There is no default: the history
   holds request bodies and headers, and replay runs handlers again.
2. A POST needs the CSRF token twice (double submit): in the ``SameSite=Strict``, ``HttpOnly``
   cookie the pages set and in the form's hidden field, compared with ``hmac.compare_digest``;
   a browser's ``Sec-Fetch-Site`` other than same-origin is refused too.
3. Every value in a page is HTML-escaped, and every answer carries a CSP that allows no script
   at all, ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and ``no-store``.

This module imports only the standard library and webhook_guard.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import inspect
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote

from webhook_guard.core.body import ClientDisconnected, read_asgi_body, read_wsgi_body
from webhook_guard.core.body import parse_content_length as _parse_content_length
from webhook_guard.core.headers import Headers
from webhook_guard.dashboard import pages
from webhook_guard.exceptions import ConfigurationError, Rejected

__all__ = [
    "CSRF_COOKIE",
    "SECURITY_HEADERS",
    "Authorize",
    "Dashboard",
    "DashboardSource",
    "RequestInfo",
    "Response",
    "is_loopback_host",
    "loopback_only",
]

logger = logging.getLogger("webhook_guard.dashboard")

CSRF_COOKIE = "webhook_guard_csrf"
CSRF_FIELD = "csrf"
# A replay form is a few hundred bytes; nothing larger is read.
FORM_CAP = 8 * 1024
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    # The pages show request bodies: no shared or browser cache may keep them.
    ("Cache-Control", "no-store"),
)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_DELIVERY = re.compile(r"^/delivery/([^/]+)(/replay)?$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class RequestInfo:
    """One request as ``authorize`` sees it, whatever served it.

    ``path`` is below the mount point (``"/"``, ``"/delivery/<id>"``); ``base`` is the mount
    point, percent-encoded, without a trailing slash. ``native`` is what the server or framework
    had: the WSGI environ, the ASGI scope (``native["user"]`` under Starlette's
    ``AuthenticationMiddleware``), or the Flask/Django request when mounted through
    ``webhook_guard.dashboard.flask`` / ``.django``.
    """

    method: str
    path: str
    query: str = ""
    base: str = ""
    headers: Headers = field(default_factory=Headers)
    remote_addr: str | None = None
    scheme: str = "http"
    native: Any = None

    def header(self, name: str) -> str | None:
        """The first value of a header (never raises on repeated headers)."""
        values = self.headers.get_all(name)
        return values[0] if values else None

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` in the request, if sent."""
        for header in self.headers.get_all("cookie"):
            for part in header.split(";"):
                key, sep, value = part.strip().partition("=")
                if sep and key == name:
                    return value.strip().strip('"')
        return None


Authorize = Callable[[RequestInfo], bool]


@dataclass(frozen=True)
class Response:
    """A framework-neutral answer; each adapter only renders it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        """``"200 OK"``: what WSGI's ``start_response`` wants."""
        return f"{self.status} {http.HTTPStatus(self.status).phrase}"


class DashboardSource(pages.HistorySource, Protocol):
    """A history reader that can also replay: ``SQLiteQueue``."""

    def replay(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> int:
        """Queue the given deliveries again; returns how many."""
        ...


_NO_AUTHORIZE = (
    "Dashboard needs authorize=: a function that gets the request and returns True for whoever "
    "may see the delivery history. It shows request bodies and headers and can replay "
    "deliveries, so it is never open by default. Mounted in an app, check that app's login "
    "(webhook_guard.dashboard.flask / .django do it for Flask and Django); served on its own, "
    "pass webhook_guard.dashboard.loopback_only, as `webhook-guard dashboard` does."
)


class Dashboard:
    """The delivery history of ``queue`` as web pages, with a Replay button.

    Args:
        queue: where the history lives (a ``SQLiteQueue``; anything with its ``deliveries``,
            ``rejections``, ``get`` and ``replay`` methods).
        authorize: gets a ``RequestInfo`` and returns ``True`` to let the request in. Required.
        allow_replay: show the Replay buttons and accept their POSTs (default True).
        clock: returns Unix seconds; for tests.
    """

    def __init__(
        self,
        queue: DashboardSource,
        *,
        authorize: Authorize | None = None,
        allow_replay: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if authorize is None or not callable(authorize):
            raise ConfigurationError(_NO_AUTHORIZE)
        if allow_replay and not callable(getattr(queue, "replay", None)):
            raise ConfigurationError(f"{queue!r} cannot replay deliveries: pass allow_replay=False")
        self.queue = queue
        self.authorize = authorize
        self.allow_replay = allow_replay
        self.clock = clock

    def __repr__(self) -> str:
        return f"<Dashboard {self.queue!r} replay={'on' if self.allow_replay else 'off'}>"

    # -- the neutral core: what every adapter calls ------------------------------------------

    def is_authorized(self, request: RequestInfo) -> bool:
        """``authorize(request) is True``; any other result or an exception refuses."""
        try:
            verdict: object = self.authorize(request)
        except Exception:
            logger.exception(
                "dashboard: authorize raised; refusing %s %s", request.method, request.path
            )
            return False
        if inspect.isawaitable(verdict):
            if inspect.iscoroutine(verdict):
                verdict.close()
            logger.error("dashboard: authorize must return a bool, not an awaitable; refusing")
            return False
        return verdict is True

    def respond(self, request: RequestInfo, read_body: Callable[[int], bytes]) -> Response:
        """Authorize, then answer. ``read_body(cap)`` is called for a POST only, after
        authorization, and may raise ``Rejected`` (too large, incomplete)."""
        if not self.is_authorized(request):
            return self.forbidden(request)
        body = b""
        if request.method == "POST":
            try:
                body = read_body(FORM_CAP)
            except Rejected as error:
                return self._error(request, error.status, error.code, str(error))
        return self.handle(request, body)

    def forbidden(self, request: RequestInfo) -> Response:
        """The 403 page for a request the host app's authorization refused."""
        return self._error(
            request, 403, "Forbidden", "You are not allowed to see this delivery history."
        )

    def handle(self, request: RequestInfo, body: bytes = b"") -> Response:
        """Route an *authorized* request. Adapters call ``respond``; the ASGI path calls this
        after its own ``is_authorized`` and asynchronous body read."""
        method = "GET" if request.method == "HEAD" else request.method
        path = request.path or "/"
        if path == "/":
            if method != "GET":
                return self._not_allowed(request, "GET")
            return self._list(request)
        match = _DELIVERY.match(path)
        if match is None:
            return self._error(request, 404, "Not Found", "There is no such page here.")
        delivery_id, replay = match.group(1), bool(match.group(2))
        if replay:
            if method != "POST":
                return self._not_allowed(request, "POST")
            return self._replay(request, delivery_id, body)
        if method != "GET":
            return self._not_allowed(request, "GET")
        return self._detail(request, delivery_id)

    # -- pages -----------------------------------------------------------------------------

    def _list(self, request: RequestInfo) -> Response:
        try:
            filters = pages.Filters.from_query(request.query)
        except pages.BadFilter as error:
            return self._error(request, 400, "Bad Request", str(error))
        query = _fields(request.query)
        # Only an id-shaped value is echoed: a crafted link cannot put a sentence on the page.
        replayed, kept = query.get("replayed", ""), query.get("not_replayed", "")
        notice = ""
        if _ID.match(replayed):
            notice = f"Delivery {replayed} was queued again; a worker runs it next."
        elif _ID.match(kept):
            notice = (
                f"Delivery {kept} was not queued again: a worker holds it right now, or it no "
                "longer exists."
            )
        ctx, cookie = self._context(request)
        html = pages.list_page(self.queue, filters, ctx, notice=notice)
        return self._page(request, 200, html, cookie)

    def _detail(self, request: RequestInfo, delivery_id: str) -> Response:
        record = self.queue.get(delivery_id)
        if record is None or record.id != delivery_id:
            return self._error(request, 404, "Not Found", f"No delivery {delivery_id[:64]!r}.")
        query = _fields(request.query)
        notice = ""
        if query.get("replayed") == "1":
            notice = "Queued again with a fresh attempt budget; a running worker picks it up."
        elif query.get("replayed") == "0":
            notice = "Not queued again: a worker holds this delivery right now."
        ctx, cookie = self._context(request)
        return self._page(request, 200, pages.detail_page(record, ctx, notice=notice), cookie)

    def _replay(self, request: RequestInfo, delivery_id: str, body: bytes) -> Response:
        if not self.allow_replay:
            return self._error(request, 403, "Forbidden", "Replay is turned off here.")
        fetch_site = request.header("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return self._error(
                request, 403, "Forbidden", "Replay is accepted only from the dashboard's pages."
            )
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return self._error(
                request, 415, "Unsupported Media Type", "Send the Replay form urlencoded."
            )
        form = _fields(body.decode("utf-8", "replace"))
        cookie = request.cookie(CSRF_COOKIE) or ""
        sent = form.get(CSRF_FIELD, "")
        if not (
            _TOKEN.match(cookie)
            and _TOKEN.match(sent)
            and hmac.compare_digest(cookie.encode(), sent.encode())
        ):
            return self._error(
                request,
                403,
                "Forbidden",
                "The form's security token is missing or does not match its cookie. Reload "
                "the page and press Replay again.",
            )
        record = self.queue.get(delivery_id)
        if record is None or record.id != delivery_id:
            return self._error(request, 404, "Not Found", f"No delivery {delivery_id[:64]!r}.")
        replayed = self.queue.replay([record.id]) == 1
        if replayed:
            logger.info(
                "dashboard: delivery %s queued again from %s", record.id, request.remote_addr
            )
        back = form.get("back", "detail")
        if back == "detail":
            location = _location(
                request.base, "/delivery/" + quote(record.id, safe=""), f"replayed={int(replayed)}"
            )
        else:
            try:
                filters = pages.Filters.from_query(back.lstrip("?"))
            except pages.BadFilter:
                filters = pages.Filters()
            flag = "replayed" if replayed else "not_replayed"
            extra = f"{flag}={quote(record.id, safe='')}"
            query = filters.to_query()
            location = _location(request.base, "/", f"{query}&{extra}" if query else extra)
        return self._with_security(303, [("Location", location)], b"", request.method)

    # -- helpers ---------------------------------------------------------------------------

    def _context(self, request: RequestInfo) -> tuple[pages.PageContext, str | None]:
        """The page context, and a Set-Cookie value when the CSRF cookie must be (re)set."""
        token = request.cookie(CSRF_COOKIE) or ""
        set_cookie = None
        if not _TOKEN.match(token):
            token = secrets.token_urlsafe(32)
            set_cookie = (
                f"{CSRF_COOKIE}={token}; Path={request.base}/; HttpOnly; SameSite=Strict"
                + ("; Secure" if request.scheme == "https" else "")
            )
        ctx = pages.PageContext(
            base=request.base,
            csrf_token=token,
            allow_replay=self.allow_replay,
            now=self.clock(),
        )
        return ctx, set_cookie

    def _page(self, request: RequestInfo, status: int, html: str, cookie: str | None) -> Response:
        headers = [("Content-Type", "text/html; charset=utf-8")]
        if cookie:
            headers.append(("Set-Cookie", cookie))
        return self._with_security(status, headers, html.encode("utf-8"), request.method)

    def _error(self, request: RequestInfo, status: int, title: str, message: str) -> Response:
        ctx = pages.PageContext(request.base, "", False, self.clock())
        return self._page(request, status, pages.error_page(status, title, message, ctx), None)

    def _not_allowed(self, request: RequestInfo, allowed: str) -> Response:
        response = self._error(
            request, 405, "Method Not Allowed", f"This page answers {allowed} only."
        )
        return Response(response.status, [*response.headers, ("Allow", allowed)], response.body)

    @staticmethod
    def _with_security(
        status: int, headers: list[tuple[str, str]], body: bytes, method: str
    ) -> Response:
        headers = [*headers, *SECURITY_HEADERS]
        if "Content-Type" not in (name for name, _ in headers):
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        headers.append(("Content-Length", str(len(body))))
        return Response(status, headers, b"" if method == "HEAD" else body)

    # -- WSGI ------------------------------------------------------------------------------

    def wsgi(
        self, environ: MutableMapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """The WSGI app. Links follow ``SCRIPT_NAME``, so it works mounted under a prefix."""
        request = request_from_environ(environ)
        response = self.respond(request, lambda cap: read_wsgi_body(environ, cap))
        start_response(response.status_line, response.headers)
        return [response.body]

    # -- ASGI ------------------------------------------------------------------------------

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app. Links follow ``root_path``, so ``app.mount("/admin/webhooks", ...)``
        works. Pages are built in a thread: the history is read with blocking SQLite calls."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = request_from_scope(scope)
        response = await self._asgi_response(request, receive)
        if response is None:
            return  # the client went away
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _asgi_response(self, request: RequestInfo, receive: Receive) -> Response | None:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.is_authorized, request):
            return self.forbidden(request)
        body = b""
        if request.method == "POST":
            try:
                declared = _parse_content_length(request.header("content-length"), FORM_CAP)
                body = await read_asgi_body(receive, declared, FORM_CAP)
            except ClientDisconnected:
                return None
            except Rejected as error:
                return self._error(request, error.status, error.code, str(error))
        return await loop.run_in_executor(None, self.handle, request, body)


def _fields(query: str) -> dict[str, str]:
    """A query string or form as a dict; a flood of fields reads as none (then refused)."""
    try:
        return dict(parse_qsl(query, max_num_fields=20))
    except ValueError:
        return {}


def _location(base: str, path: str, query: str) -> str:
    return base + path + ("?" + query if query else "")


async def _lifespan(receive: Receive, send: Send) -> None:
    """Served as the top-level ASGI app, there is nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _wsgi_text(value: str) -> str:
    """PEP 3333 carries paths as latin-1-decoded bytes; they were UTF-8 on the wire."""
    return value.encode("latin-1").decode("utf-8", "replace")


def request_from_environ(environ: MutableMapping[str, Any]) -> RequestInfo:
    headers = [
        (key[5:].replace("_", "-").lower(), str(value))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").lower(), str(environ[key])))
    base = quote(_wsgi_text(environ.get("SCRIPT_NAME", "")).rstrip("/"), safe="/")
    return RequestInfo(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        path=_wsgi_text(environ.get("PATH_INFO", "")) or "/",
        query=str(environ.get("QUERY_STRING", "")),
        base=base,
        headers=Headers(headers),
        remote_addr=environ.get("REMOTE_ADDR"),
        scheme=str(environ.get("wsgi.url_scheme", "http")),
        native=environ,
    )


def request_from_scope(scope: Scope) -> RequestInfo:
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    # Starlette >= 0.33 keeps the full path and puts the mount point in root_path.
    if root and path.startswith(root) and path[len(root) :][:1] in ("/", ""):
        path = path[len(root) :]
    client = scope.get("client")
    return RequestInfo(
        method=str(scope.get("method", "GET")).upper(),
        path=path or "/",
        query=bytes(scope.get("query_string", b"")).decode("latin-1"),
        base=quote(root.rstrip("/"), safe="/"),
        headers=Headers(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())
        ),
        remote_addr=str(client[0]) if client else None,
        scheme=str(scope.get("scheme", "http")),
        native=scope,
    )


# -- authorizers ---------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost`` or a loopback IP (``127.0.0.0/8``, ``::1``), port ignored."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def loopback_only(request: RequestInfo) -> bool:
    """Let in requests from this machine only, the authorizer of ``webhook-guard dashboard``.

    The client address must be a loopback one, and so must the ``Host`` header: a web page
    elsewhere can make a browser on this machine reach 127.0.0.1 under its own domain name
    (DNS rebinding), and would then read the pages; its requests carry that name as Host.
    """
    if request.remote_addr is None or not is_loopback_host(request.remote_addr):
        return False
    host = request.header("host")
    return host is None or is_loopback_host(host)
