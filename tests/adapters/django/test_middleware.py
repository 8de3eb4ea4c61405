"""WebhookGuardMiddleware inside Django: CSRF, login, sync and async chains, the raw body."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.utils.decorators import sync_only_middleware

from tests.adapters.transports_django import MIDDLEWARE, OUR_MIDDLEWARE, use_guard
from tests.contract import (
    CAP,
    PATH,
    SECRET,
    ASGITransport,
    WSGITransport,
    cases_for,
    contract_guard,
    run_case,
)
from webhook_guard.adapters.django import WebhookGuardMiddleware
from webhook_guard.adapters.django.middleware import render
from webhook_guard.core import outcome as outcomes
from webhook_guard.core.guard import Guard
from webhook_guard.exceptions import PayloadTooLarge
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import sign_request

BODY = b'{"event": "invoice.paid", "n": 1}'
SLACK_FORM = b"token=abc&team_id=T1&command=%2Fdeploy&text=hello+world%21"


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[Guard]:
    guard = contract_guard("cloudaipilot", SQLiteQueue(tmp_path / "q.db"))
    use_guard(guard)
    yield guard
    guard.queue.close()


def signed(guard: Guard, body: bytes = BODY) -> dict[str, str]:
    return sign_request(guard.scheme, SECRET, body, timestamp=int(guard.clock()))


@sync_only_middleware
def sync_only(get_response: Any) -> Any:
    """A third-party style middleware that makes the chain before it synchronous under ASGI."""

    def middleware(request: HttpRequest) -> Any:
        return get_response(request)

    return middleware


def test_csrf_enforced_still_lets_a_signed_webhook_through(guard: Guard) -> None:
    """With CSRF enforced, the webhook gets 200 while a POST to another path gets 403."""
    client = Client(enforce_csrf_checks=True)
    reply = client.post(PATH, BODY, content_type="application/json", headers=signed(guard))
    assert reply.status_code == 200 and reply.json()["status"] == "ok"
    other = client.post("/sync", BODY, content_type="application/json")
    assert other.status_code == 403


def test_async_client_with_csrf_enforced(guard: Guard) -> None:
    """AsyncClient drives the async chain: 200 signed, 401 tampered, 403 on another POST path."""

    async def run() -> tuple[int, int, int]:
        client = AsyncClient(enforce_csrf_checks=True)
        ok = await client.post(PATH, BODY, content_type="application/json", headers=signed(guard))
        bad = await client.post(
            PATH, BODY + b" ", content_type="application/json", headers=signed(guard)
        )
        other = await client.post("/async", BODY, content_type="application/json")
        return ok.status_code, bad.status_code, other.status_code

    assert asyncio.run(run()) == (200, 401, 403)


@pytest.mark.skipif(django.VERSION < (5, 1), reason="LoginRequiredMiddleware is Django 5.1+")
def test_login_required_middleware_does_not_redirect_the_webhook(guard: Guard) -> None:
    """LoginRequiredMiddleware after ours redirects other paths but never the webhook."""
    login = "django.contrib.auth.middleware.LoginRequiredMiddleware"
    with override_settings(MIDDLEWARE=[*MIDDLEWARE, login]):
        client = Client()
        reply = client.post(PATH, BODY, content_type="application/json", headers=signed(guard))
        assert reply.status_code == 200, reply.content
        assert client.get("/sync").status_code == 302


def test_form_encoded_body_verifies_and_request_post_is_never_parsed(tmp_path: Path) -> None:
    """A Slack-style form body verifies over its raw bytes; request.POST is never loaded."""
    guard = contract_guard("slack", SQLiteQueue(tmp_path / "q.db"))
    headers = sign_request("slack", SECRET, SLACK_FORM, timestamp=int(guard.clock()))
    request = RequestFactory().post(
        PATH, SLACK_FORM, content_type="application/x-www-form-urlencoded", headers=headers
    )
    use_guard(guard)
    middleware = WebhookGuardMiddleware(lambda r: pytest.fail("a webhook reached the app"))
    reply = middleware(request)
    assert isinstance(reply, HttpResponse) and reply.status_code == 200, reply
    assert "_post" not in request.__dict__, "request.POST was parsed"
    (stored,) = guard.queue.deliveries()  # type: ignore[attr-defined]
    assert guard.queue.get(stored.id).body == SLACK_FORM  # type: ignore[attr-defined]


def test_form_encoded_body_through_the_client(tmp_path: Path) -> None:
    """The same form body through Django's test client (full middleware chain) verifies."""
    guard = contract_guard("slack", SQLiteQueue(tmp_path / "q.db"))
    use_guard(guard)
    headers = sign_request("slack", SECRET, SLACK_FORM, timestamp=int(guard.clock()))
    reply = Client(enforce_csrf_checks=True).post(
        PATH, SLACK_FORM, content_type="application/x-www-form-urlencoded", headers=headers
    )
    assert reply.status_code == 200, reply.content


@pytest.mark.parametrize("view", ["sync", "async"])
@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_other_paths_pass_through_untouched(guard: Guard, handler: str, view: str) -> None:
    """Non-webhook requests reach sync and async views with their body, under WSGI and ASGI."""
    transport = WSGITransport(WSGIHandler()) if handler == "wsgi" else ASGITransport(ASGIHandler())
    reply = transport.request("PUT", f"/echo/{view}", {"Content-Type": "text/plain"}, b"hello")
    assert reply.status == 200, reply.body
    assert reply.json() == {"view": view, "method": "PUT", "body": "hello"}
    assert guard.queue.rejections() == []  # type: ignore[attr-defined]


def test_middleware_mode_follows_the_handler() -> None:
    """Under WSGI the middleware runs sync; under ASGI it is awaited as a coroutine."""

    def sync_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    async def async_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    assert not WebhookGuardMiddleware(sync_response).async_mode
    assert WebhookGuardMiddleware(async_response).async_mode
    assert asyncio.iscoroutinefunction(WebhookGuardMiddleware(async_response))


@pytest.mark.parametrize("case", cases_for("cloudaipilot"), ids=lambda c: c.name)
def test_contract_when_a_sync_only_middleware_follows_under_asgi(case: Any, tmp_path: Path) -> None:
    """A sync-only middleware after ours makes it run sync on an ASGIRequest: same contract."""
    db = tmp_path / ("missing/q.db" if case.queue_down else "q.db")
    guard = contract_guard("cloudaipilot", SQLiteQueue(db))
    use_guard(guard)
    chain = [OUR_MIDDLEWARE, f"{__name__}.sync_only", *MIDDLEWARE[1:]]
    with override_settings(MIDDLEWARE=chain):
        app = ASGIHandler()  # loads the chain now
    run_case(case, guard, ASGITransport(app))


def test_body_already_read_by_an_earlier_middleware_is_used(guard: Guard) -> None:
    """If a middleware before ours read request.body, Django's copy is verified."""
    request = RequestFactory().post(
        PATH, BODY, content_type="application/json", headers=signed(guard)
    )
    assert request.body == BODY
    reply = WebhookGuardMiddleware(lambda r: pytest.fail("reached the app"))(request)
    assert isinstance(reply, HttpResponse)
    assert reply.status_code == 200, reply.content


def test_multipart_parsed_before_us_is_a_configuration_error(guard: Guard) -> None:
    """request.POST parsed (multipart) by an earlier middleware loses the body: say so."""
    headers = {k: v for k, v in signed(guard).items() if k != "Content-Type"}
    request = RequestFactory().post(PATH, {"a": "b"}, headers=headers)  # multipart
    assert request.POST["a"] == "b"
    with pytest.raises(ImproperlyConfigured, match="first in MIDDLEWARE"):
        WebhookGuardMiddleware(lambda r: pytest.fail("reached the app"))(request)


def test_asgi_body_over_data_upload_max_memory_size_is_413(guard: Guard) -> None:
    """Under ASGI, Django's own limit below our cap answers 413, never Django's 400."""
    body = b"x" * 2000
    assert len(body) < CAP
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        reply = ASGITransport(ASGIHandler()).request(
            "POST", PATH, signed(guard, body), body, chunked=True
        )
    assert (reply.status, reply.json()) == (413, {"error": "payload_too_large"})


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_other_methods_on_the_webhook_path_are_405_json(guard: Guard, method: str) -> None:
    """Any method but POST on the webhook path gets the JSON 405 with Allow: POST."""
    reply = Client().generic(method, PATH)
    assert reply.status_code == 405
    assert reply["Allow"] == "POST"
    if method != "HEAD":
        assert reply.json() == {"error": "method_not_allowed"}


def test_rendered_response_keeps_the_outcomes_bytes_and_headers() -> None:
    """Status, body and headers are the Outcome's; only ASGI adds Connection: close to a 413."""
    outcome = outcomes.rejected(PayloadTooLarge())
    asgi_request = HttpRequest()  # no wsgi.input: an ASGI-like request
    asgi = render(outcome, asgi_request)
    wsgi = render(outcome, RequestFactory().post(PATH))
    assert asgi.status_code == wsgi.status_code == 413
    assert asgi.content == wsgi.content == outcome.body
    assert list(asgi.items()) == [*outcome.headers, ("Connection", "close")]
    assert list(wsgi.items()) == list(outcome.headers)


def test_wsgi_chunked_body_without_a_terminated_stream_is_411(guard: Guard) -> None:
    """A chunked WSGI body the server cannot terminate is refused (411), not verified as empty."""
    request = RequestFactory().post(
        PATH, BODY, content_type="application/json", headers=signed(guard)
    )
    request.META.pop("CONTENT_LENGTH")
    request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
    reply = WebhookGuardMiddleware(lambda r: pytest.fail("reached the app"))(request)
    assert isinstance(reply, HttpResponse)
    assert (reply.status_code, reply.content) == (411, b'{"error": "length_required"}')
