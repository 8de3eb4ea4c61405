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
finds the app among the globals of the modules it imports: ``prepare_worker``). A Guard belongs
to one app: a second live app serving it is a ``ConfigurationError``. The store's consumer
starts with the first request of any path the app serves (Flask's ``request_started`` signal;
on Flask 2.2 without blinker, the extension's ``before_request`` or the webhook's own request),
never at import or in ``init_app`` (gunicorn ``--preload`` forks after import).
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import sys
import threading
import types
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

try:
    import flask
    import werkzeug.exceptions
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "webhook_guard.adapters.flask needs Flask: pip install 'webhook-guard[flask]'"
    ) from error

from webhook_guard.core import outcome as outcomes
from webhook_guard.core.body import check_buffered_body, read_wsgi_body
from webhook_guard.core.config import GuardConfig
from webhook_guard.core.guard import Guard, Handler, Outcome
from webhook_guard.core.headers import wsgi_headers
from webhook_guard.core.request import answer
from webhook_guard.exceptions import ConfigurationError, IncompleteBody, MethodNotAllowed

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
        # Held weakly: a Guard of a discarded app (an app-factory test) must be able to go.
        atexit.register(_stop_worker_at_exit, weakref.ref(guard))
    _start_with_any_request()

    def view(**_: Any) -> ResponseReturnValue:
        # Raises ConfigurationError (a 500) when another live app serves this Guard already.
        bind_guard(flask.current_app._get_current_object(), guard)  # type: ignore[attr-defined]
        outcome = answer(guard, _FlaskRequest(flask.request))
        if outcome is None:  # the client hung up mid-body: nobody reads this answer
            return render(outcomes.rejected(IncompleteBody("client disconnected")))
        return render(outcome)

    view.methods = _ALL_METHODS  # type: ignore[attr-defined]
    view.provide_automatic_options = False  # type: ignore[attr-defined]
    setattr(view, GUARD_ATTRIBUTE, guard)
    return view


def _stop_worker_at_exit(guard_ref: weakref.ref[Guard]) -> None:
    guard = guard_ref()
    if guard is not None:
        guard.stop_worker()


class AppContext:
    """The handler context of a Guard served by a Flask view: its app's ``app_context()``.

    The app is held weakly, so that a module-level Guard outlives the apps an app factory
    builds one after another (tests); it moves to a new app only once the old one is gone.
    """

    def __init__(self, app: flask.Flask) -> None:
        self._app = weakref.ref(app)

    @property
    def app(self) -> flask.Flask | None:
        """The app whose context handlers run in (None once it is gone)."""
        return self._app()

    def move_to(self, app: flask.Flask) -> None:
        """Run handlers in ``app``'s context from now on (the previous app is gone)."""
        self._app = weakref.ref(app)

    def __call__(self) -> AbstractContextManager[Any]:
        app = self._app()
        if app is None:
            raise ConfigurationError(
                "the Flask app that served this Guard is gone; its handlers need an app context"
            )
        return app.app_context()


def bind_guard(app: flask.Flask, guard: Guard) -> None:
    """Run ``guard``'s handlers inside ``app``'s application context (a no-op once bound).

    Raises ``ConfigurationError`` when another live app serves ``guard`` already: its
    handlers can run in one app's context only.
    """
    context: AppContext | None = getattr(guard, _CONTEXT_ATTRIBUTE, None)
    if context is not None and context.app is app:
        return  # every request after the first
    with _binding_lock:  # gthread: two first requests must not bind twice
        context = getattr(guard, _CONTEXT_ATTRIBUTE, None)
        if context is None:
            context = AppContext(app)
            setattr(guard, _CONTEXT_ATTRIBUTE, context)
            guard.add_handler_context(context)
            return
        bound = context.app
        if bound is app:
            return
        if bound is not None:
            gc.collect()  # an app only cyclic garbage still holds is no app in use
            bound = context.app
        if bound is not None:
            raise ConfigurationError(
                f"{guard!r} is served by two Flask apps ({bound.name!r} and {app.name!r}); its "
                "handlers can run in one app's context only: give each app its own Guard (with "
                "its own endpoint=), e.g. build it in the app factory or use WebhookGuard"
            )
        context.move_to(app)


_binding_lock = threading.Lock()


_CONTEXT_ATTRIBUTE = "_webhook_guard_flask_context"  # on a bound Guard: its AppContext


def served_guards(app: flask.Flask) -> list[Guard]:
    """Every Guard a view of ``app`` serves (decorator and extension forms)."""
    found: list[Guard] = []
    for view in app.view_functions.values():
        guard = getattr(view, GUARD_ATTRIBUTE, None)
        if isinstance(guard, Guard) and all(guard is not g for g in found):
            found.append(guard)
    return found


# app -> (how many views it had, the Guards they serve and that bound to it): what each request
# of that app checks, recomputed only when a view is added.
_started: weakref.WeakKeyDictionary[flask.Flask, tuple[int, list[Guard]]] = (
    weakref.WeakKeyDictionary()
)


def _on_any_request(app: flask.Flask, **_: Any) -> None:
    """Any request of ``app``: start its Guards' store consumers (pid- and liveness-checked, so
    this costs a lookup and a comparison once they run). Never fails the request."""
    views = len(app.view_functions)
    cached = _started.get(app)
    if cached is None or cached[0] != views:
        guards = []
        for guard in served_guards(app):
            try:
                bind_guard(app, guard)
            except ConfigurationError as error:  # the webhook view itself answers 500
                logger.error("webhook_guard: %s", error)
                continue
            guards.append(guard)
        cached = _started[app] = (views, guards)
    for guard in cached[1]:
        try:
            guard.ensure_worker()
        except Exception:  # secondary work never fails the app's request
            logger.exception("webhook_guard: starting the consumer of %r failed", guard)
    _answer_unlisted_methods_in_json()


def _answer_unlisted_methods_in_json() -> None:
    """A method Werkzeug's router refuses before any view runs (one no rule lists, ``BREW``)
    on a webhook path: answer the contract's JSON 405, recorded like any rejection, instead of
    Werkzeug's HTML page. Done by giving the pending routing error our response."""
    request = flask.request
    if not isinstance(request.routing_exception, werkzeug.exceptions.MethodNotAllowed):
        return
    try:
        adapter = flask.current_app.url_map.bind_to_environ(request.environ)
        endpoint, _ = adapter.match(method="POST")
    except Exception:  # not a webhook path: Flask's own 405 stands
        return
    guard = getattr(flask.current_app.view_functions.get(endpoint), GUARD_ATTRIBUTE, None)
    if isinstance(guard, Guard):
        error = MethodNotAllowed(f"{request.method} is not POST")
        outcome = guard.reject(error, request.method, request.path, remote_addr=request.remote_addr)
        request.routing_exception = werkzeug.exceptions.MethodNotAllowed(
            valid_methods=["POST"], response=render(outcome)
        )


def _on_request_of_current_app() -> None:
    """``before_request`` form of ``_on_any_request`` (Flask 2.2 without blinker)."""
    _on_any_request(flask.current_app._get_current_object())  # type: ignore[attr-defined]


def signals_available() -> bool:
    """True when Flask's signals work (always from Flask 2.3; on 2.2 only with blinker)."""
    return bool(getattr(flask.signals, "signals_available", True))


_connected = False


def _start_with_any_request() -> None:
    """Listen to every app's ``request_started`` (a blinker signal). On Flask 2.2 without
    blinker the extension uses ``before_request`` and the decorator's view starts the consumer
    on its own requests."""
    global _connected
    if _connected:
        return
    if signals_available():
        flask.request_started.connect(_on_any_request)
    _connected = True


def prepare_worker(guards: Sequence[Guard], modules: Sequence[types.ModuleType]) -> None:
    """For ``webhook-guard worker``: run each Guard's handlers in the context of the Flask app
    whose views serve it, found among the globals of ``modules`` (then of every module loaded).

    Raises ``ConfigurationError`` when two apps serve one Guard; a Guard no app serves is
    logged (its handlers then run outside any app context).
    """
    missing = list(guards)
    seen: set[int] = set()
    for pool in (list(modules), [m for m in list(sys.modules.values()) if m is not None]):
        for app in _apps_in(pool, seen):
            for guard in served_guards(app):
                if any(guard is g for g in guards):
                    bind_guard(app, guard)
                    missing = [g for g in missing if g is not guard]
        if not missing:
            return
    for guard in missing:
        logger.warning(
            "webhook_guard: no Flask app found serving %r (define the app at module level in "
            "a module the worker imports); its handlers run outside an app context",
            guard,
        )


def _apps_in(modules: Sequence[types.ModuleType], seen: set[int]) -> list[flask.Flask]:
    """The Flask apps among the modules' globals, each once across calls sharing ``seen``."""
    apps = []
    for module in modules:
        try:
            values = list(vars(module).values())
        except TypeError:  # a module stand-in without a __dict__
            continue
        for value in values:
            try:
                # A proxy's __class__ may be computed (Werkzeug's LocalProxy): it may raise.
                is_app = isinstance(value, flask.Flask)
            except Exception:
                continue
            if is_app and id(value) not in seen:
                seen.add(id(value))
                apps.append(value)
    return apps


class _FlaskRequest:
    """The core's accessors (``core.request.WebRequest``) over a Flask request."""

    def __init__(self, request: flask.Request) -> None:
        self._request = request
        self.method = request.method
        self.path = request.path
        self.remote_addr = request.remote_addr
        self.headers = wsgi_headers(request.environ)

    def read_body(self, cap: int) -> bytes:
        request = self._request
        cached = getattr(request, "_cached_data", None)
        if isinstance(cached, bytes) and not request.headers.get("Transfer-Encoding"):
            # A before_request hook already read the (length-framed) body: Flask holds the bytes.
            return check_buffered_body(cached, request.headers.get("Content-Length"), cap)
        return read_wsgi_body(request.environ, cap)


def render(outcome: Outcome) -> flask.Response:
    """The Outcome as a Flask response: the same status, headers and bytes as every adapter."""
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
    ``_HANDLER_TIMEOUT``, ``_REQUEST_DEADLINE``, ``_INSECURE_DEV_MODE``; what is not set comes
    from the environment (``WEBHOOK_GUARD_*``). ``prefix=`` reads another set of keys instead
    (two extensions on one app: ``WebhookGuard(prefix="GITHUB_WEBHOOK_")`` reads
    ``GITHUB_WEBHOOK_SECRET``, ``GITHUB_WEBHOOK_PATH``, ...).

    Each app gets its own Guard, kept in ``app.extensions["webhook_guard"]`` (``guard_for``);
    handlers registered with ``on`` run for every app's Guard, inside that app's context. Pass
    ``guard=`` to use a Guard you built yourself (then one live app at a time may use it).
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        guard: Guard | None = None,
        prefix: str = CONFIG_PREFIX,
    ) -> None:
        self._given = guard
        self.prefix = prefix
        # Held weakly: the Guard of an app that is gone (an app-factory test) frees its endpoint.
        self._guards: list[weakref.ref[Guard]] = []
        self._handlers: list[tuple[Handler, tuple[str, ...], float | None]] = []
        if app is not None:
            self.init_app(app)

    @property
    def guard(self) -> Guard:
        """The Guard of the only app this extension serves (use ``guard_for`` with several)."""
        if self._given is not None:
            return self._given
        guards = self.guards
        if not guards:
            raise ConfigurationError("WebhookGuard.init_app(app) has not been called yet")
        if len(guards) > 1:
            raise ConfigurationError(
                f"this WebhookGuard serves {len(guards)} apps, each with its own Guard: "
                "use hooks.guard_for(app)"
            )
        return guards[0]

    @property
    def guards(self) -> list[Guard]:
        """The Guard of every app this extension serves."""
        if self._given is not None:
            return [self._given]
        return [g for g in (ref() for ref in self._guards) if g is not None]

    def guard_for(self, app: flask.Flask) -> Guard:
        """The Guard that serves ``app``."""
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, AppState) or self not in state.by_extension:
            raise ConfigurationError(
                f"WebhookGuard.init_app() was not called for app {app.name!r}"
            )
        return state.by_extension[self]

    def on(
        self, *event_types: str, timeout: float | None = None
    ) -> Callable[[Handler], Handler]:
        """Register a handler on every app's Guard (``@hooks.on("invoice.paid")``)."""

        def register(handler: Handler) -> Handler:
            self._handlers.append((handler, event_types, timeout))
            for guard in self.guards:
                guard.add_handler(handler, *event_types, timeout=timeout)
            return handler

        return register

    def init_app(self, app: flask.Flask) -> Guard:
        """Serve ``app``'s webhook path with a Guard built from ``app.config`` (or ``guard=``);
        returns that Guard. Starts nothing: the app's first request starts the consumer."""
        path = app.config.get(self.prefix + "PATH", DEFAULT_PATH)
        if self._given is not None:
            guard = self._given
        else:
            settings = {self.prefix + "ENDPOINT": path, **app.config}
            guard = Guard(config=GuardConfig.from_mapping(settings, prefix=self.prefix))
            for handler, event_types, timeout in self._handlers:
                guard.add_handler(handler, *event_types, timeout=timeout)
        bind_guard(app, guard)  # raises when another live app serves a guard= Guard
        if self._given is None:
            self._guards = [ref for ref in self._guards if ref() is not None]
            self._guards.append(weakref.ref(guard))
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, AppState):
            state = app.extensions[EXTENSION_KEY] = AppState()
        state.add(self, guard)
        name = "webhook_guard"
        if name in app.view_functions:
            name = f"webhook_guard_{len(app.view_functions)}"
        app.add_url_rule(path, name, make_view(guard), methods=_ALL_METHODS)
        if not signals_available():
            # Flask 2.2 without blinker: no request_started signal to start the consumer with.
            app.before_request(_on_request_of_current_app)
        return guard
