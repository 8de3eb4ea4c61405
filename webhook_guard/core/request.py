"""The one request path every adapter takes: method, body read with the cap, reject or receive.

An adapter supplies accessors to its framework's request (``WebRequest`` or
``AsyncWebRequest``: method, path, headers, client address, and how to read the raw body with a
cap) and renders the ``Outcome``; the order of the checks lives here only, so adapters cannot
drift: the method is checked before a byte of the body is read (an oversized PUT is a 405
everywhere), then the signature headers (a request without them is refused before its body is
read: no ``100 Continue``, no slow read), then the body is read with the cap (413), then the
Guard verifies and enqueues. All of it within ``guard.request_deadline`` (``core.deadline``): a
body still arriving then is refused with 408, a store that cannot take the delivery in time
answers 503.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from webhook_guard.core.body import ClientDisconnected, require_post
from webhook_guard.core.deadline import deadline_after
from webhook_guard.core.headers import Headers, HeadersLike
from webhook_guard.core.outcome import Outcome
from webhook_guard.exceptions import Rejected

if TYPE_CHECKING:
    from webhook_guard.core.guard import Guard

__all__ = ["AsyncWebRequest", "WebRequest", "answer", "answer_async"]

logger = logging.getLogger("webhook_guard")


class WebRequest(Protocol):
    """What a synchronous adapter tells the core about one request."""

    @property
    def method(self) -> str:
        """The HTTP method, as sent."""
        ...

    @property
    def path(self) -> str:
        """The request path, for the logs and the history."""
        ...

    @property
    def remote_addr(self) -> str | None:
        """The client's address, if the server knows it."""
        ...

    @property
    def headers(self) -> HeadersLike:
        """The request headers."""
        ...

    def read_body(self, cap: int) -> bytes:
        """The raw body, at most ``cap`` bytes; raises ``Rejected`` (413, 400, 411) or
        ``ClientDisconnected``."""
        ...


class AsyncWebRequest(Protocol):
    """What an ASGI adapter tells the core about one request."""

    @property
    def method(self) -> str:
        """The HTTP method, as sent."""
        ...

    @property
    def path(self) -> str:
        """The request path, for the logs and the history."""
        ...

    @property
    def remote_addr(self) -> str | None:
        """The client's address, if the server knows it."""
        ...

    @property
    def headers(self) -> HeadersLike:
        """The request headers."""
        ...

    async def read_body(self, cap: int) -> bytes:
        """The raw body, at most ``cap`` bytes; raises ``Rejected`` or ``ClientDisconnected``."""
        ...


def answer(guard: Guard, request: WebRequest) -> Outcome | None:
    """The answer to one request on a webhook path, within ``guard.request_deadline``; None
    when the client went away (nobody is left to answer, and nothing was stored)."""
    with deadline_after(guard.request_deadline):
        return _answer(guard, request)


def _answer(guard: Guard, request: WebRequest) -> Outcome | None:
    method = request.method
    try:
        require_post(method)
        headers = Headers.of(request.headers)  # once, for the precheck and the verify
        guard.precheck(headers)
        body = request.read_body(guard.max_body_bytes)
    except ClientDisconnected:
        _log_disconnect(guard, request.path, request.remote_addr)
        return None
    except Rejected as error:
        return guard.reject(error, method, request.path, remote_addr=request.remote_addr)
    return guard.receive(method, request.path, headers, body, remote_addr=request.remote_addr)


async def answer_async(guard: Guard, request: AsyncWebRequest) -> Outcome | None:
    """``answer`` for ASGI adapters: the body is awaited and the store never blocks the loop."""
    with deadline_after(guard.request_deadline):
        return await _answer_async(guard, request)


async def _answer_async(guard: Guard, request: AsyncWebRequest) -> Outcome | None:
    method = request.method
    try:
        require_post(method)
        headers = Headers.of(request.headers)  # once, for the precheck and the verify
        guard.precheck(headers)
        body = await request.read_body(guard.max_body_bytes)
    except ClientDisconnected:
        _log_disconnect(guard, request.path, request.remote_addr)
        return None
    except Rejected as error:
        return await guard.areject(error, method, request.path, remote_addr=request.remote_addr)
    return await guard.areceive(
        method, request.path, headers, body, remote_addr=request.remote_addr
    )


def _log_disconnect(guard: Guard, path: str, remote_addr: str | None) -> None:
    # One line, not a traceback: a client that hangs up mid-body is the client's business.
    logger.info(
        "webhook request to %s from %s: client disconnected before its body was complete "
        "(endpoint %r; nothing stored)",
        path,
        remote_addr or "?",
        guard.endpoint,
    )
