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

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, RawPostDataException

from webhook_guard.adapters.django.conf import conf
from webhook_guard.core.body import (
    check_buffered_body,
    parse_content_length,
    read_wsgi_body,
    require_post,
)
from webhook_guard.core.guard import Guard, Outcome
from webhook_guard.exceptions import PayloadTooLarge, Rejected

__all__ = ["WebhookGuardMiddleware", "read_body", "render"]

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
        guard = conf.guard_for(request.path_info)
        if guard is None:
            response: HttpResponseBase = self.get_response(request)
            return response
        method, remote_addr = request.method or "", request.META.get("REMOTE_ADDR")
        try:
            body = read_body(request, guard)
        except Rejected as error:
            outcome = guard.reject(error, method, request.path, remote_addr=remote_addr)
        else:
            outcome = guard.receive(
                method, request.path, request.headers.items(), body, remote_addr=remote_addr
            )
        return render(outcome, request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        guard = conf.guard_for(request.path_info)
        if guard is None:
            response: HttpResponseBase = await self.get_response(request)
            return response
        method, remote_addr = request.method or "", request.META.get("REMOTE_ADDR")
        try:
            body = read_body(request, guard)
        except Rejected as error:
            outcome = await guard.areject(error, method, request.path, remote_addr=remote_addr)
        else:
            outcome = await guard.areceive(
                method, request.path, request.headers.items(), body, remote_addr=remote_addr
            )
        return render(outcome, request)


def read_body(request: HttpRequest, guard: Guard) -> bytes:
    """The raw body of a webhook request, at most ``guard.max_body_bytes``, or a ``Rejected``."""
    require_post(request.method or "")
    cap, meta = guard.max_body_bytes, request.META
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


def render(outcome: Outcome, request: HttpRequest) -> HttpResponse:
    """The Outcome as a Django response: same status, headers and bytes as every adapter."""
    response = HttpResponse(outcome.body, status=outcome.status, reason=outcome.reason or None)
    for name, value in outcome.headers:
        response[name] = value
    if outcome.close_connection and "wsgi.input" not in request.META:
        response["Connection"] = "close"  # ASGI only: PEP 3333 forbids hop-by-hop headers
    return response
