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

Handlers run inside the application context of the app that serves their Guard (``current_app``,
its config, Flask-SQLAlchemy), in the embedded consumer and in ``webhook-guard worker`` (which
finds the app in the module it imports: ``prepare_worker``). The store's consumer starts with the
first request of any path the app serves, never at import (gunicorn ``--preload`` forks after
import).
"""

from __future__ import annotations

import atexit
import functools
import logging
import types
from collections.abc import Callable, Sequence
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

__all__ = ["WebhookGuard", "make_view", "prepare_worker", "render", "webhook"]

logger = logging.getLogger("webhook_guard")
CONFIG_PREFIX = "WEBHOOK_GUARD_"
DEFAULT_PATH = "/webhook"
EXTENSION_KEY = "webhook_guard"
GUARD_ATTRIBUTE = "webhook_guard"  # on every view make_view builds: the Guard it serves
# Every method reaches the view, so that a wrong one gets our JSON 405, not Flask's HTML one
# (OPTIONS too: Flask's automatic OPTIONS answer is turned off for the view). Werkzeug routes
# by method, so a method listed nowhere (an invented one) still gets its HTML 405.
_ALL_METHODS = [
    *("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"),
    *("PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "QUERY"),
]


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
    _start_with_any_request()

    def view(**_: Any) -> ResponseReturnValue:
        bind_guard(flask.current_app._get_current_object(), guard)  # type: ignore[attr-defined]
        outcome = answer(guard, _FlaskRequest(flask.request))
        if outcome is None:  # the client hung up mid-body: nobody reads this answer
            return render(outcomes.rejected(IncompleteBody("client disconnected")))
        return render(outcome)

    view.methods = _ALL_METHODS  # type: ignore[attr-defined]
    view.provide_automatic_options = False  # type: ignore[attr-defined]
    setattr(view, GUARD_ATTRIBUTE, guard)
    return view


def bind_guard(app: flask.Flask, guard: Guard) -> None:
    """Run ``guard``'s handlers inside ``app``'s application context (once per Guard). A Guard
    served by two apps keeps the first: its handlers cannot run in both (logged)."""
    bound: flask.Flask | None = getattr(guard, "_flask_app", None)
    if bound is app:
        return
    if bound is not None:
        logger.error(
            "%r is served by two Flask apps (%s and %s); its handlers run in %s's context: "
            "give each app its own Guard",
            guard,
            bound.name,
            app.name,
            bound.name,
        )
        return
    guard._flask_app = app  # type: ignore[attr-defined]
    guard.add_handler_context(app.app_context)


def served_guards(app: flask.Flask) -> list[Guard]:
    """Every Guard a view of ``app`` serves (decorator and extension forms)."""
    found: list[Guard] = []
    for view in app.view_functions.values():
        guard = getattr(view, GUARD_ATTRIBUTE, None)
        if isinstance(guard, Guard) and all(guard is not g for g in found):
            found.append(guard)
    return found


def _on_any_request(app: flask.Flask, **_: Any) -> None:
    """The first request of any path: bind this app's Guards and start their store's consumer
    (pid- and liveness-checked, so this costs a comparison afterwards)."""
    for guard in served_guards(app):
        bind_guard(app, guard)
        if guard.config.worker == "embedded":
            try:
                guard.ensure_worker()
            except Exception:  # secondary work never fails the app's request
                logger.exception("webhook_guard: starting the consumer of %r failed", guard)


_connected = False


def _start_with_any_request() -> None:
    """Listen to every app's ``request_started`` (a blinker signal; on Flask 2.2 without
    blinker, the webhook view's own requests start the consumer instead)."""
    global _connected
    if _connected:
        return
    signals_available = getattr(flask.signals, "signals_available", True)
    if signals_available:
        flask.request_started.connect(_on_any_request)
    _connected = True


def prepare_worker(guards: Sequence[Guard], modules: Sequence[types.ModuleType]) -> None:
    """For ``webhook-guard worker``: run each Guard's handlers in the context of the Flask app
    (found in ``modules``) whose views serve it."""
    wanted = {id(guard) for guard in guards}
    for module in modules:
        for value in list(vars(module).values()):
            if isinstance(value, flask.Flask):
                for guard in served_guards(value):
                    if id(guard) in wanted:
                        bind_guard(value, guard)


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


class AppState:
    """What ``app.extensions["webhook_guard"]`` holds: the app's Guard (``guard``: the one
    registered last) and, by extension, every Guard the app serves."""

    def __init__(self) -> None:
        self.by_extension: dict[WebhookGuard, Guard] = {}
        self.guard: Guard | None = None

    def add(self, extension: WebhookGuard, guard: Guard) -> None:
        """Record that ``extension`` serves this app with ``guard``."""
        self.by_extension[extension] = guard
        self.guard = guard


class WebhookGuard:
    """Flask extension: one webhook endpoint per app, configured from ``app.config``.

    Settings (all optional except the secret): ``WEBHOOK_GUARD_SECRET`` (or ``_SECRETS``),
    ``_SCHEME``, ``_QUEUE`` / ``_DB``, ``_PATH`` (default ``/webhook``), ``_ENDPOINT`` (default:
    the path), ``_MAX_BODY_BYTES``, ``_TOLERANCE``, ``_WORKER``, ``_LEASE_SECONDS``,
    ``_HANDLER_TIMEOUT``, ``_INSECURE_DEV_MODE``; what is not set comes from the environment
    (``WEBHOOK_GUARD_*``). Each app gets its own Guard, kept in ``app.extensions``; handlers
    registered with ``on`` run for every app's Guard. Pass ``guard=`` to use a Guard you built
    yourself (then only one app may use it).
    """

    def __init__(self, app: flask.Flask | None = None, *, guard: Guard | None = None) -> None:
        self._given = guard
        self._guards: list[Guard] = []
        self._handlers: list[tuple[Handler, tuple[str, ...], float | None]] = []
        if app is not None:
            self.init_app(app)

    @property
    def guard(self) -> Guard:
        """The Guard of the only app this extension serves (use ``guard_for`` with several)."""
        if self._given is not None:
            return self._given
        if len(self._guards) != 1:
            raise RuntimeError(
                f"this WebhookGuard serves {len(self._guards)} apps: use hooks.guard_for(app)"
            )
        return self._guards[0]

    def guard_for(self, app: flask.Flask) -> Guard:
        """The Guard that serves ``app``."""
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, AppState) or self not in state.by_extension:
            raise RuntimeError(f"WebhookGuard.init_app() was not called for app {app.name!r}")
        return state.by_extension[self]

    def on(
        self, *event_types: str, timeout: float | None = None
    ) -> Callable[[Handler], Handler]:
        """Register a handler on every app's Guard (``@hooks.on("invoice.paid")``)."""

        def register(handler: Handler) -> Handler:
            self._handlers.append((handler, event_types, timeout))
            for guard in self._all_guards():
                guard.add_handler(handler, *event_types, timeout=timeout)
            return handler

        return register

    def init_app(self, app: flask.Flask) -> None:
        """Serve ``app``'s webhook path with a Guard built from ``app.config`` (or ``guard=``)."""
        path = app.config.get(CONFIG_PREFIX + "PATH", DEFAULT_PATH)
        if self._given is not None:
            if self._guards:
                raise RuntimeError("a WebhookGuard built with guard= serves one app only")
            guard = self._given
        else:
            settings = {CONFIG_PREFIX + "ENDPOINT": path, **app.config}
            guard = Guard(config=GuardConfig.from_mapping(settings, prefix=CONFIG_PREFIX))
            for handler, event_types, timeout in self._handlers:
                guard.add_handler(handler, *event_types, timeout=timeout)
        self._guards.append(guard)
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, AppState):
            state = app.extensions[EXTENSION_KEY] = AppState()
        state.add(self, guard)
        endpoint_name = "webhook_guard" if "webhook_guard" not in app.view_functions else None
        app.add_url_rule(
            path, endpoint_name or f"webhook_guard_{len(app.view_functions)}", make_view(guard),
            methods=_ALL_METHODS,
        )
        bind_guard(app, guard)

    def _all_guards(self) -> list[Guard]:
        return [self._given] if self._given is not None else list(self._guards)
