"""webhook_guard.core.body: reading the raw body from WSGI and ASGI, bounded by the cap."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from webhook_guard.core.body import (
    ASGIMessage,
    ASGIReceive,
    ClientDisconnected,
    parse_content_length,
    read_asgi_body,
    read_wsgi_body,
)
from webhook_guard.exceptions import (
    IncompleteBody,
    InvalidContentLength,
    LengthRequired,
    PayloadTooLarge,
)

CAP = 1000


class UnreadableStream:
    """A wsgi.input that fails the test if anything reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body stream was read")


def wsgi_environ(
    body: bytes | Any,
    *,
    content_length: str | None = None,
    chunked: bool = False,
    terminated: bool = False,
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "wsgi.input": io.BytesIO(body) if isinstance(body, bytes) else body,
    }
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    if terminated:
        environ["wsgi.input_terminated"] = True
    return environ


# -- parse_content_length -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("0", 0), ("17", 17)])
def test_parse_content_length_valid(value: str | None, expected: int | None) -> None:
    """An absent header is None; a plain decimal is its value."""
    assert parse_content_length(value, CAP) == expected


def test_parse_content_length_at_cap_passes_and_over_cap_is_too_large() -> None:
    """A declared length equal to the cap passes; one more byte is PayloadTooLarge."""
    assert parse_content_length(str(CAP), CAP) == CAP
    with pytest.raises(PayloadTooLarge):
        parse_content_length(str(CAP + 1), CAP)


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "+5", "0x10", "1.0", "12 34", "²", "١٢"])
def test_parse_content_length_garbage_is_invalid(value: str) -> None:
    """A Content-Length that is not a plain non-negative decimal is InvalidContentLength (400)."""
    with pytest.raises(InvalidContentLength) as caught:
        parse_content_length(value, CAP)
    assert caught.value.status == 400


def test_parse_content_length_huge_is_too_large_without_int_overflow() -> None:
    """A thousand-digit Content-Length is PayloadTooLarge, and its echo in the hint is short."""
    with pytest.raises(PayloadTooLarge) as caught:
        parse_content_length("9" * 1000, CAP)
    assert len(caught.value.hint) < 100


# -- read_wsgi_body ---------------------------------------------------------------------------


def test_wsgi_reads_exactly_the_declared_length() -> None:
    """With Content-Length, exactly that many bytes are read and nothing past them."""
    stream = io.BytesIO(b"hello, world!trailing bytes of the next request")
    body = read_wsgi_body(wsgi_environ(stream, content_length="13"), CAP)
    assert body == b"hello, world!"
    assert stream.tell() == 13


def test_wsgi_reads_a_body_larger_than_one_read() -> None:
    """A declared body longer than one read call's size arrives whole."""
    payload = bytes(range(256)) * 800
    environ = wsgi_environ(payload, content_length=str(len(payload)))
    assert read_wsgi_body(environ, len(payload)) == payload


def test_wsgi_zero_length_body() -> None:
    """Content-Length: 0 gives an empty body."""
    assert read_wsgi_body(wsgi_environ(b"ignored", content_length="0"), CAP) == b""


def test_wsgi_short_body_is_incomplete() -> None:
    """A client that sends fewer bytes than it declared gets IncompleteBody."""
    with pytest.raises(IncompleteBody, match="5 of 10"):
        read_wsgi_body(wsgi_environ(b"12345", content_length="10"), CAP)


def test_wsgi_over_cap_by_content_length_reads_nothing() -> None:
    """A Content-Length over the cap is PayloadTooLarge before the stream is touched."""
    environ = wsgi_environ(UnreadableStream(), content_length=str(CAP + 1))
    with pytest.raises(PayloadTooLarge) as caught:
        read_wsgi_body(environ, CAP)
    assert caught.value.status == 413


@pytest.mark.parametrize("value", ["-1", "ten", "1,2"])
def test_wsgi_garbage_content_length_is_invalid(value: str) -> None:
    """A negative or garbage Content-Length is InvalidContentLength, without reading."""
    with pytest.raises(InvalidContentLength):
        read_wsgi_body(wsgi_environ(UnreadableStream(), content_length=value), CAP)


def test_wsgi_chunked_under_cap_reads_to_the_end() -> None:
    """A chunked body the server terminates is read to its end when under the cap."""
    payload = b"x" * CAP
    environ = wsgi_environ(payload, chunked=True, terminated=True)
    assert read_wsgi_body(environ, CAP) == payload


def test_wsgi_chunked_over_cap_stops_at_cap_plus_one() -> None:
    """A chunked body over the cap is PayloadTooLarge after reading cap+1 bytes, not the rest."""
    cap = 100_000  # more than one read call
    stream = io.BytesIO(b"y" * (10 * cap))
    with pytest.raises(PayloadTooLarge):
        read_wsgi_body(wsgi_environ(stream, chunked=True, terminated=True), cap)
    assert stream.tell() == cap + 1


def test_wsgi_chunked_ignores_content_length() -> None:
    """With Transfer-Encoding: chunked a Content-Length is ignored (RFC 9112 6.3)."""
    environ = wsgi_environ(b"abcdef", content_length="3", chunked=True, terminated=True)
    environ["HTTP_TRANSFER_ENCODING"] = "gzip, Chunked"
    assert read_wsgi_body(environ, CAP) == b"abcdef"


def test_wsgi_chunked_without_input_terminated_is_length_required() -> None:
    """A chunked body the server cannot terminate is LengthRequired (411), never read."""
    with pytest.raises(LengthRequired) as caught:
        read_wsgi_body(wsgi_environ(UnreadableStream(), chunked=True), CAP)
    assert caught.value.status == 411


def test_wsgi_no_length_and_not_terminated_is_empty() -> None:
    """Without Content-Length, chunking or input_terminated there is no body (PEP 3333)."""
    assert read_wsgi_body(wsgi_environ(UnreadableStream()), CAP) == b""


def test_wsgi_no_length_but_terminated_reads_to_the_end() -> None:
    """A terminated stream without Content-Length is read to its end, within the cap."""
    assert read_wsgi_body(wsgi_environ(b"abc", terminated=True), CAP) == b"abc"


# -- read_asgi_body ---------------------------------------------------------------------------


def scripted(*messages: ASGIMessage) -> tuple[ASGIReceive, list[ASGIMessage]]:
    """A receive callable that plays ``messages`` in order; the list shows what was left unread."""
    pending = list(messages)

    async def receive() -> ASGIMessage:
        if not pending:
            raise AssertionError("receive() called after the last message")
        return pending.pop(0)

    return receive, pending


def chunk(body: bytes, more: bool = True) -> ASGIMessage:
    return {"type": "http.request", "body": body, "more_body": more}


def test_asgi_joins_several_chunks() -> None:
    """Chunks across several http.request messages are joined in order."""
    receive, pending = scripted(chunk(b"abc"), chunk(b""), chunk(b"def"), chunk(b"g", more=False))
    assert asyncio.run(read_asgi_body(receive, 7, CAP)) == b"abcdefg"
    assert pending == []


def test_asgi_single_message_without_more_body_key() -> None:
    """A single message without more_body is the whole body."""
    receive, _ = scripted({"type": "http.request", "body": b"solo"})
    assert asyncio.run(read_asgi_body(receive, None, CAP)) == b"solo"


def test_asgi_empty_body() -> None:
    """A message with no body key is an empty body."""
    receive, _ = scripted({"type": "http.request"})
    assert asyncio.run(read_asgi_body(receive, None, CAP)) == b""


def test_asgi_over_cap_stops_receiving() -> None:
    """The chunk that passes the cap raises PayloadTooLarge; later messages are not received."""
    receive, pending = scripted(
        chunk(b"a" * 600), chunk(b"b" * 600), chunk(b"c" * 600), chunk(b"", more=False)
    )
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_asgi_body(receive, None, CAP))
    assert len(pending) == 2


def test_asgi_exactly_at_cap_passes() -> None:
    """A body of exactly cap bytes passes."""
    receive, _ = scripted(chunk(b"a" * 500), chunk(b"b" * (CAP - 500), more=False))
    assert len(asyncio.run(read_asgi_body(receive, CAP, CAP))) == CAP


def test_asgi_disconnect_is_client_disconnected() -> None:
    """An http.disconnect before the body ends raises ClientDisconnected: nobody to answer."""
    receive, _ = scripted(chunk(b"partial"), {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnected):
        asyncio.run(read_asgi_body(receive, 100, CAP))


@pytest.mark.parametrize("declared", [3, 20])
def test_asgi_declared_length_mismatch_is_incomplete(declared: int) -> None:
    """A body longer or shorter than its Content-Length is IncompleteBody."""
    receive, _ = scripted(chunk(b"0123456789", more=False))
    with pytest.raises(IncompleteBody, match=str(declared)):
        asyncio.run(read_asgi_body(receive, declared, CAP))


def test_require_post_refuses_every_other_method() -> None:
    """A webhook path takes POST only (any case); other methods are 405 before any read."""
    from webhook_guard.core.body import require_post
    from webhook_guard.exceptions import MethodNotAllowed

    require_post("POST")
    require_post("post")
    for method in ("GET", "PUT", "HEAD", ""):
        with pytest.raises(MethodNotAllowed):
            require_post(method)


def test_a_buffered_body_is_held_to_the_cap_and_its_declared_length() -> None:
    """A body the framework read first is refused over the cap or short of Content-Length."""
    from webhook_guard.core.body import check_buffered_body

    assert check_buffered_body(b"abc", "3", 10) == b"abc"
    assert check_buffered_body(b"abc", None, 10) == b"abc"
    with pytest.raises(PayloadTooLarge):
        check_buffered_body(b"x" * 11, None, 10)
    with pytest.raises(PayloadTooLarge):
        check_buffered_body(b"abc", "11", 10)
    with pytest.raises(IncompleteBody):
        check_buffered_body(b"abc", "5", 10)
    with pytest.raises(InvalidContentLength):
        check_buffered_body(b"abc", "-1", 10)
