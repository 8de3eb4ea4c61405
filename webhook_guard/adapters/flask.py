"""Flask adapter: a decorator that turns a function into a verified, queued webhook endpoint.

::

    guard = Guard(os.environ["WEBHOOK_SECRET"])

    @app.route("/webhook")              # no methods=: the view answers 405 itself, in JSON
    @webhook(guard)
    def on_delivery(delivery):          # runs in the worker, after the sender got its 200
        ...

or the extension form, configured from ``app.config["WEBHOOK_GUARD_*"]``::

    hooks = WebhookGuard()
    @hooks.on("invoice.paid")
    def paid(delivery): ...
    hooks.init_app(app)                 # serves WEBHOOK_GUARD_PATH (default /webhook)

The body is read from ``wsgi.input`` with the Guard's cap, chunked bodies included, because
Werkzeug 3.1 silently truncates an oversized chunked body to ``MAX_CONTENT_LENGTH``.
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

try:
    import flask
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "webhook_guard.adapters.flask needs Flask: pip install 'webhook-guard[flask]'"
    ) from error

from webhook_guard.core import outcome as outcomes
from webhook_guard.core.body import check_buffered_body, read_wsgi_body
from webhook_guard.core.config import GuardConfig
from webhook_guard.core.guard import Guard, Handler, Outcome
from webhook_guard.core.request import answer
from webhook_guard.exceptions import IncompleteBody

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

__all__ = ["WebhookGuard", "webhook"]

CONFIG_PREFIX = "WEBHOOK_GUARD_"
DEFAULT_PATH = "/webhook"
# Every method reaches the view, so that a wrong one gets our JSON 405, not Flask's HTML one
# (OPTIONS too: Flask's automatic OPTIONS answer is turned off for the view).
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def webhook(
    guard: Guard, *event_types: str
) -> Callable[[Handler], Callable[..., ResponseReturnValue]]:
    """Register the decorated function as ``guard``'s handler and return the Flask view."""

    def decorate(handler: Handler) -> Callable[..., ResponseReturnValue]:
        guard.add_handler(handler, *event_types)
        view = make_view(guard)
        functools.update_wrapper(view, handler)
        return view

    return decorate


def make_view(guard: Guard) -> Callable[..., ResponseReturnValue]:
    """A Flask view that answers ``guard``'s webhook requests per the response contract."""
    if guard.config.worker == "embedded":
        atexit.register(guard.stop_worker)

    def view(**_: Any) -> ResponseReturnValue:
        outcome = answer(guard, _FlaskRequest(flask.request))
        if outcome is None:  # the client hung up mid-body: nobody reads this answer
            return render(outcomes.rejected(IncompleteBody("client disconnected")))
        return render(outcome)

    view.methods = _ALL_METHODS  # type: ignore[attr-defined]
    view.provide_automatic_options = False  # type: ignore[attr-defined]
    return view


class _FlaskRequest:
    """The core's accessors (``core.request.WebRequest``) over a Flask request."""

    def __init__(self, request: flask.Request) -> None:
        self._request = request
        self.method = request.method
        self.path = request.path
        self.remote_addr = request.remote_addr
        self.headers = list(request.headers.items())

    def read_body(self, cap: int) -> bytes:
        request = self._request
        cached = getattr(request, "_cached_data", None)
        if isinstance(cached, bytes) and not request.headers.get("Transfer-Encoding"):
            # A before_request hook already read the (length-framed) body: Flask holds the bytes.
            return check_buffered_body(cached, request.headers.get("Content-Length"), cap)
        return read_wsgi_body(request.environ, cap)


def render(outcome: Outcome) -> flask.Response:
    return flask.Response(outcome.body, status=outcome.status, headers=list(outcome.headers))


class WebhookGuard:
    """Flask extension: one webhook endpoint configured from ``app.config``.

    Settings (all optional except the secret): ``WEBHOOK_GUARD_SECRET`` (or ``_SECRETS``),
    ``_SCHEME``, ``_QUEUE`` / ``_DB``, ``_PATH``, ``_MAX_BODY_BYTES``, ``_TOLERANCE``,
    ``_WORKER``, ``_INSECURE_DEV_MODE``. Pass ``guard=`` to use a Guard you built yourself.
    """

    def __init__(self, app: flask.Flask | None = None, *, guard: Guard | None = None) -> None:
        self.guard = guard
        self._pending: list[tuple[Handler, tuple[str, ...]]] = []
        if app is not None:
            self.init_app(app)

    def on(self, *event_types: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if self.guard is not None:
                self.guard.add_handler(handler, *event_types)
            else:
                self._pending.append((handler, event_types))
            return handler

        return register

    def init_app(self, app: flask.Flask) -> None:
        if self.guard is None:
            self.guard = Guard(config=GuardConfig.from_mapping(app.config, prefix=CONFIG_PREFIX))
        for handler, event_types in self._pending:
            self.guard.add_handler(handler, *event_types)
        self._pending.clear()
        path = app.config.get(CONFIG_PREFIX + "PATH", DEFAULT_PATH)
        app.add_url_rule(path, "webhook_guard", make_view(self.guard), methods=_ALL_METHODS)
        app.extensions["webhook_guard"] = self
