"""Reading a request body from the lowest layer, bounded by a cap, for WSGI and ASGI.

Framework body helpers silently truncate or empty chunked bodies in some versions (Werkzeug 3.1
truncates an oversized chunked body to the limit; Django under WSGI empties it), so adapters read
the bytes themselves with these functions and never trust a framework's copy.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, BinaryIO

from webhook_guard.core.deadline import current_deadline
from webhook_guard.core.socket_deadline import SocketDeadline
from webhook_guard.exceptions import (
    IncompleteBody,
    InvalidContentLength,
    LengthRequired,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
)

_READ_SIZE = 64 * 1024

ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]


def parse_content_length(value: str | None, cap: int) -> int | None:
    """The declared length, None when absent; refuse junk and anything over ``cap`` up front."""
    if value is None or value == "":
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise InvalidContentLength("Content-Length is not a non-negative integer")
    if len(value) > 18 or int(value) > cap:
        raise PayloadTooLarge(f"Content-Length {value[:20]} is over the {cap}-byte cap")
    return int(value)


def require_post(method: str) -> None:
    """A webhook path takes POST only; adapters call this before reading any body."""
    if method.upper() != "POST":
        raise MethodNotAllowed(f"{method} is not POST")


def check_buffered_body(body: bytes, content_length: str | None, cap: int) -> bytes:
    """A body the framework had already read in full (Django under ASGI, a hook that read it
    first): refused over the cap or short of its declared length, like one we read ourselves."""
    declared = parse_content_length(content_length, cap)
    if len(body) > cap:
        raise PayloadTooLarge(f"body of {len(body)} bytes is over the {cap}-byte cap")
    if declared is not None and len(body) != declared:
        raise IncompleteBody(f"received {len(body)} bytes where Content-Length said {declared}")
    return body


def read_wsgi_body(
    environ: MutableMapping[str, Any], cap: int, deadline: float | None = None
) -> bytes:
    """The raw body of a WSGI request, at most ``cap`` bytes, or a ``Rejected``.

    ``deadline`` (default: the current request's, ``core.deadline``) bounds the read: a body
    still arriving then is ``RequestTimeout`` (408). Where the server exposes its socket
    (``gunicorn.socket``), a client that trickles or stalls is cut off at the deadline; on other
    servers a read in progress cannot be interrupted, and the deadline is checked between
    reads."""
    if deadline is None:
        deadline = current_deadline()
    sock = environ.get("gunicorn.socket") if deadline is not None else None
    reader = _Reader(environ["wsgi.input"], deadline, sock)
    try:
        return _read_wsgi_body(environ, reader, cap)
    finally:
        reader.close()


def _read_wsgi_body(environ: MutableMapping[str, Any], reader: _Reader, cap: int) -> bytes:
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    declared = None if chunked else parse_content_length(environ.get("CONTENT_LENGTH"), cap)
    if declared is not None:
        body = _read_exact(reader, declared)
        if len(body) < declared:
            raise IncompleteBody(f"the client sent {len(body)} of {declared} declared bytes")
        return body
    if not environ.get("wsgi.input_terminated"):
        if chunked:
            # PEP 3333 lets a server hand over a chunked stream it cannot terminate; reading it
            # could block forever, and verifying the empty body Django would see is wrong.
            raise LengthRequired("this server cannot pass a chunked body: send Content-Length")
        return b""
    return _read_until_end(reader, cap)


class _Reader:
    """Reads from a WSGI stream within a deadline; a connection lost under it (gunicorn raises
    an IOError subclass, Werkzeug its own ClientDisconnected) means the client went away."""

    __slots__ = ("_socket_deadline", "deadline", "stream")

    def __init__(self, stream: BinaryIO, deadline: float | None, sock: object) -> None:
        self.stream, self.deadline = stream, deadline
        self._socket_deadline = (
            SocketDeadline(sock, deadline)
            if deadline is not None and isinstance(sock, socket.socket)
            else None
        )

    def read(self, size: int) -> bytes:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _timed_out()
        if self._socket_deadline is not None and self.deadline is not None:
            self._socket_deadline.before_read(self.deadline)
        try:
            return self.stream.read(size)
        except TimeoutError as error:  # socket.timeout: the deadline cut the read off
            raise _timed_out() from error
        except OSError as error:
            raise ClientDisconnected(str(error)) from error
        except Exception as error:
            if type(error).__name__ == "ClientDisconnected":  # werkzeug's, not imported here
                raise ClientDisconnected(str(error)) from error
            raise

    def close(self) -> None:
        if self._socket_deadline is not None:
            self._socket_deadline.close()


def _timed_out() -> RequestTimeout:
    return RequestTimeout("the body was still arriving at the request deadline")


def _read_exact(reader: _Reader, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = reader.read(min(remaining, _READ_SIZE))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _read_until_end(reader: _Reader, cap: int) -> bytes:
    buffer = bytearray()
    while True:
        chunk = reader.read(min(_READ_SIZE, cap + 1 - len(buffer)))
        if not chunk:
            return bytes(buffer)
        buffer += chunk
        if len(buffer) > cap:
            raise PayloadTooLarge(f"chunked body passed the {cap}-byte cap")


class ClientDisconnected(Exception):
    """The client went away before its body was complete: there is nobody to answer."""


async def read_asgi_body(
    receive: ASGIReceive, declared: int | None, cap: int, deadline: float | None = None
) -> bytes:
    """The raw body from ASGI ``http.request`` messages, counting bytes as they arrive; within
    ``deadline`` (default: the current request's), else ``RequestTimeout`` (408)."""
    if deadline is None:
        deadline = current_deadline()
    if deadline is None:
        return await _read_asgi_body(receive, declared, cap)
    try:
        return await _within(
            _read_asgi_body(receive, declared, cap), max(0.0, deadline - time.monotonic())
        )
    except asyncio.TimeoutError as error:  # builtin TimeoutError from 3.11 on
        raise _timed_out() from error


async def _within(awaitable: Awaitable[bytes], seconds: float) -> bytes:
    """``await awaitable``, cancelled after ``seconds`` with ``asyncio.TimeoutError``. Like
    ``asyncio.timeout`` (3.11+) it cancels the calling task from a timer instead of running
    the awaitable in a task of its own as ``wait_for`` does: no task and no extra trip round
    the event loop per request, whose body has usually arrived already."""
    task = asyncio.current_task()
    if task is None:  # not in a task (a bare coroutine driven by hand): the general way
        return await asyncio.wait_for(awaitable, seconds)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if not expired:
            raise  # cancelled by someone else: not ours to swallow
        uncancel = getattr(task, "uncancel", None)  # 3.11+: undo our own cancel request
        if uncancel is not None:
            uncancel()
        raise asyncio.TimeoutError from None
    finally:
        timer.cancel()


async def _read_asgi_body(receive: ASGIReceive, declared: int | None, cap: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > cap:
                raise PayloadTooLarge(f"body passed the {cap}-byte cap")
            parts.append(chunk)
        if not message.get("more_body", False):
            break
    if declared is not None and total != declared:
        raise IncompleteBody(f"received {total} bytes where Content-Length said {declared}")
    return parts[0] if len(parts) == 1 else b"".join(parts)
