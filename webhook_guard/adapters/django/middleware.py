"""``WebhookGuardMiddleware``: answers webhook paths itself, sync or async; the rest passes by.

Put it first in ``MIDDLEWARE``. It returns its own response, so CSRF and login checks (which run
in ``process_view``) never apply to webhook paths, and nothing before it can have parsed
``request.POST``. Being before ``SecurityMiddleware`` and ``CommonMiddleware`` also means no
``SECURE_SSL_REDIRECT``, no ``ALLOWED_HOSTS`` check and no ``APPEND_SLASH`` for those paths.

Bytes: under WSGI the body is read from ``wsgi.input`` with the Guard's cap, because Django's
own reader sees an empty body for a chunked request. Under ASGI Django has already spooled the
body; ``request.body`` is read after a Content-Length pre-check and held to the cap. Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` still applies there (check ``webhook_guard.W001``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, RawPostDataException

from webhook_guard.adapters.django.conf import conf
from webhook_guard.core import outcome as outcomes
from webhook_guard.core.body import check_buffered_body, parse_content_length, read_wsgi_body
from webhook_guard.core.guard import Outcome
from webhook_guard.core.request import answer, answer_async
from webhook_guard.exceptions import IncompleteBody, PayloadTooLarge

__all__ = ["WebhookGuardMiddleware", "read_body", "render"]

logger = logging.getLogger("webhook_guard")
GetResponse = Callable[[HttpRequest], Any]
ORDER_HINT = (
    "the request body was read before WebhookGuardMiddleware ran: put "
    "'webhook_guard.adapters.django.WebhookGuardMiddleware' first in MIDDLEWARE"
)


class WebhookGuardMiddleware:
    """Answers requests to ``settings.WEBHOOK_GUARD["ENDPOINTS"]`` paths per the contract."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)  # tells Django's handler to await us

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        _start_consumers()
        guard = conf.guard_for(request.path_info)
        if guard is None:
            response: HttpResponseBase = self.get_response(request)
            return response
        return render(answer(guard, _DjangoRequest(request)), request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        _start_consumers()
        guard = conf.guard_for(request.path_info)
        if guard is None:
            response: HttpResponseBase = await self.get_response(request)
            return response
        return render(await answer_async(guard, _AsyncDjangoRequest(request)), request)


_started_in: int | None = None  # the pid whose consumers the first request started


def _start_consumers() -> None:
    """The first request of any path starts every endpoint's embedded consumer in this process
    (never the import: gunicorn --preload forks after it). Secondary work: never fails a
    request."""
    global _started_in
    if _started_in == os.getpid():
        return
    _started_in = os.getpid()
    try:
        conf.start_consumers()
    except Exception:
        logger.exception("webhook_guard: starting the embedded consumers failed")


class _DjangoRequest:
    """The core's accessors (``core.request.WebRequest``) over a Django request."""

    def __init__(self, request: HttpRequest) -> None:
        self._request = request
        self.method = request.method or ""
        self.path = request.path
        self.remote_addr: str | None = request.META.get("REMOTE_ADDR")
        self.headers = list(request.headers.items())

    def read_body(self, cap: int) -> bytes:
        return read_body(self._request, cap)


class _AsyncDjangoRequest(_DjangoRequest):
    """Under ASGI Django has spooled the body already: reading it never blocks the loop."""

    async def read_body(self, cap: int) -> bytes:  # type: ignore[override]
        return read_body(self._request, cap)


def read_body(request: HttpRequest, cap: int) -> bytes:
    """The raw body of a webhook request, at most ``cap`` bytes, or a ``Rejected``."""
    meta = request.META
    chunked = "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
    # WSGIRequest frames its stream by CONTENT_LENGTH (0 when chunked), so wsgi.input is intact
    # unless something read the body already; then Django's copy is the one to use.
    if "wsgi.input" in meta and (chunked or not getattr(request, "_read_started", False)):
        return read_wsgi_body(meta, cap)
    # Refuse a declared length over the cap before Django's copy is touched.
    parse_content_length(meta.get("CONTENT_LENGTH"), cap)
    try:
        body = request.body
    except RequestDataTooBig as error:
        raise PayloadTooLarge("body is over Django's DATA_UPLOAD_MAX_MEMORY_SIZE") from error
    except RawPostDataException as error:
        raise ImproperlyConfigured(ORDER_HINT) from error
    return check_buffered_body(body, meta.get("CONTENT_LENGTH"), cap)


def render(outcome: Outcome | None, request: HttpRequest) -> HttpResponse:
    """The Outcome as a Django response: same status, headers and bytes as every adapter
    (None: the client hung up mid-body, and nobody reads the 400 sent back)."""
    if outcome is None:
        outcome = outcomes.rejected(IncompleteBody("client disconnected"))
    response = HttpResponse(outcome.body, status=outcome.status, reason=outcome.reason or None)
    for name, value in outcome.headers:
        response[name] = value
    if outcome.close_connection and "wsgi.input" not in request.META:
        response["Connection"] = "close"  # ASGI only: PEP 3333 forbids hop-by-hop headers
    return response
