"""The one request path (core/request.py): what is checked before a byte of the body is read."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.contract import SECRET, contract_guard
from webhook_guard.core.body import ClientDisconnected
from webhook_guard.core.request import answer, answer_async
from webhook_guard.testing import sign_request

BODY = b'{"event": "x"}'


class Request:
    """A request whose body must not be read unless ``readable``."""

    def __init__(self, method: str, headers: dict[str, str], readable: bool = True) -> None:
        self.method, self.path, self.remote_addr = method, "/webhook", "127.0.0.1"
        self.headers = headers
        self.readable = readable
        self.reads = 0

    def read_body(self, cap: int) -> bytes:
        self.reads += 1
        assert self.readable, "the body was read although the request was already refused"
        return BODY


class AsyncRequest(Request):
    async def read_body(self, cap: int) -> bytes:  # type: ignore[override]
        return Request.read_body(self, cap)


@pytest.mark.parametrize(
    ("method", "headers", "status", "code"),
    [
        ("PUT", {}, 405, "method_not_allowed"),
        ("POST", {}, 400, "missing_signature"),
        ("POST", {"X-CloudAIPilot-Signature": "md5=00"}, 400, "malformed_signature"),
    ],
    ids=["wrong method", "unsigned", "malformed signature"],
)
def test_a_request_that_cannot_pass_is_refused_before_its_body_is_read(
    tmp_path: Path, method: str, headers: dict[str, str], status: int, code: str
) -> None:
    """Method, then signature headers: refused with no read (no 100 Continue, no slow read)."""
    guard = contract_guard("cloudaipilot", str(tmp_path / "q.db"))
    for request in (Request(method, headers, False), AsyncRequest(method, headers, False)):
        if isinstance(request, AsyncRequest):
            outcome = asyncio.run(answer_async(guard, request))
        else:
            outcome = answer(guard, request)
        assert outcome is not None and outcome.status == status
        assert json.loads(outcome.body) == {"error": code}
        assert request.reads == 0


def test_a_signed_request_is_read_verified_and_accepted(tmp_path: Path) -> None:
    """The same path with the signature header reads the body once and answers 200."""
    guard = contract_guard("cloudaipilot", str(tmp_path / "q.db"))
    signed = sign_request(guard.scheme, SECRET, BODY)
    request = Request("POST", signed)
    outcome = answer(guard, request)
    assert outcome is not None and outcome.status == 200 and request.reads == 1


def test_a_client_gone_mid_body_gets_no_answer_and_nothing_is_stored(tmp_path: Path) -> None:
    """ClientDisconnected while reading: None (nobody to answer), nothing recorded."""
    guard = contract_guard("cloudaipilot", str(tmp_path / "q.db"))

    class Gone(Request):
        def read_body(self, cap: int) -> bytes:
            raise ClientDisconnected("reset")

    assert answer(guard, Gone("POST", sign_request(guard.scheme, SECRET, BODY))) is None
    assert guard.queue.deliveries() == [] and guard.queue.rejections() == []  # type: ignore[attr-defined]


def test_a_requests_headers_are_parsed_once_for_the_precheck_and_the_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths build one ``Headers`` per request and hand it to every step that reads the
    headers (the precheck, the verify, the stored copy): building it is a measurable part of
    a 1 KiB verify. Counted by wrapping the real constructor, which still runs."""
    from webhook_guard.core import headers as headers_module

    built: list[object] = []
    original = headers_module.Headers.__init__

    def counted(self: headers_module.Headers, raw: headers_module.HeadersLike = ()) -> None:
        built.append(raw)
        original(self, raw)

    monkeypatch.setattr(headers_module.Headers, "__init__", counted)
    guard = contract_guard("cloudaipilot", str(tmp_path / "q.db"))
    for request in (Request("POST", {}), AsyncRequest("POST", {})):
        request.headers = sign_request(guard.scheme, SECRET, BODY)
        built.clear()
        if isinstance(request, AsyncRequest):
            outcome = asyncio.run(answer_async(guard, request))
        else:
            outcome = answer(guard, request)
        assert outcome is not None and outcome.status == 200
        assert built == [request.headers]
