"""WSGI endpoints that each fail the way real webhook endpoints fail, for ``webhook-guard check``.

Served together under real gunicorn as ``tests.diagnose.failing_apps:app`` (one path each),
with the sample-app environment, since ``/auth/webhook`` puts an auth layer in front of the
real Flask sample:

- ``/auth/webhook``: basic auth in front of the webhook path (401, HTML, not our contract);
- ``/csrf/webhook``: a CSRF check in front of it (403, Django's wording);
- ``/raises/webhook``: the handler processes inline and raises (gunicorn's 500);
- ``/slow/webhook``: the handler processes for ``SLOW_SECONDS`` before answering (3 s, or
  ``$FAILING_APPS_SLOW_SECONDS``), and verifies nothing;
- ``/get-only/webhook``: the route allows GET only (405);
- ``/no-verify/webhook``: answers 200 to anything (signature verification is off);
- ``/reserializes/webhook``: verifies over ``json.dumps(json.loads(body))``, not the raw body.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# How long /slow/webhook processes before answering; longer than a test's 1-second budget.
SLOW_SECONDS = float(os.environ.get("FAILING_APPS_SLOW_SECONDS", "3"))


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def _answer(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str = "text/html; charset=utf-8",
    extra: tuple[tuple[str, str], ...] = (),
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    start_response(status, headers)
    return [body]


def auth_in_front(inner: WSGIApp) -> WSGIApp:
    """Basic auth over every path, the webhook's included: the sender has no credentials."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not environ.get("HTTP_AUTHORIZATION"):
            _read_body(environ)
            return _answer(
                start_response,
                "401 Unauthorized",
                b"<h1>401 Unauthorized</h1><p>Log in to continue.</p>",
                extra=(("WWW-Authenticate", 'Basic realm="admin"'),),
            )
        return inner(environ, start_response)

    return app


def csrf_in_front(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A CSRF middleware that was not told to exempt the webhook view."""
    _read_body(environ)
    return _answer(
        start_response,
        "403 Forbidden",
        b"<h1>Forbidden (403)</h1><p>CSRF verification failed. Request aborted.</p>",
    )


def raises_inline(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Processes the event inside the request, and the processing raises."""
    event = json.loads(_read_body(environ))
    customer = event["customer"]  # the test event has none: KeyError, gunicorn answers 500
    return _answer(start_response, "200 OK", str(customer).encode(), "text/plain")


def slow(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Processes the event before answering, for longer than a test's budget."""
    _read_body(environ)
    time.sleep(SLOW_SECONDS)
    return _answer(start_response, "200 OK", b'{"status": "processed"}', "application/json")


def get_only(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A route registered for GET only, as a framework answers a POST to it."""
    _read_body(environ)
    if environ["REQUEST_METHOD"] == "GET":
        return _answer(start_response, "200 OK", b"webhook endpoint", "text/plain")
    return _answer(
        start_response,
        "405 Method Not Allowed",
        b"<h1>Method Not Allowed</h1>",
        extra=(("Allow", "GET, HEAD, OPTIONS"),),
    )


def no_verify(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Accepts whatever arrives, signed or not."""
    _read_body(environ)
    return _answer(start_response, "200 OK", b'{"status": "ok"}', "application/json")


def reserializes(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Verifies the signature over ``json.dumps(json.loads(body))``, not the raw body: the
    mistake `check` must catch (its body does not survive the round trip)."""
    import hashlib
    import hmac

    body = _read_body(environ)
    given = environ.get("HTTP_X_CLOUDAIPILOT_SIGNATURE", "")
    rebuilt = json.dumps(json.loads(body)).encode()
    secret = os.environ["WEBHOOK_SECRET"].split(",")[0].encode()
    expected = "sha256=" + hmac.new(secret, rebuilt, hashlib.sha256).hexdigest()
    if hmac.compare_digest(given, expected):
        return _answer(start_response, "200 OK", b'{"status": "ok"}', "application/json")
    return _answer(
        start_response, "401 Unauthorized", b'{"error": "signature_mismatch"}', "application/json"
    )


def _sample_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    from sample_apps.flask_app import app as sample  # reads WEBHOOK_SECRET when first used

    result: Iterable[bytes] = sample(environ, start_response)
    return result


ROUTES: dict[str, WSGIApp] = {
    "/auth/webhook": auth_in_front(_sample_app),
    "/csrf/webhook": csrf_in_front,
    "/raises/webhook": raises_inline,
    "/slow/webhook": slow,
    "/get-only/webhook": get_only,
    "/no-verify/webhook": no_verify,
    "/reserializes/webhook": reserializes,
}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Every failing endpoint at its own path; anything else is a plain 404."""
    handler = ROUTES.get(environ.get("PATH_INFO", ""))
    if handler is None:
        _read_body(environ)
        return _answer(start_response, "404 Not Found", b"<h1>Not Found</h1>")
    if handler is ROUTES["/auth/webhook"]:
        environ = {**environ, "PATH_INFO": "/webhook"}
    return handler(environ, start_response)
