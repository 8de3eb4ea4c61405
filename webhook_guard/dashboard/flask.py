"""Mount the dashboard in a Flask app, behind that app's own login.

::

    from flask_login import current_user
    from webhook_guard.dashboard.flask import mount_flask

    mount_flask(
        app,
        guard.queue,                       # the SQLiteQueue your Guard writes to
        prefix="/admin/webhooks",
        authorize=lambda request: current_user.is_authenticated and current_user.is_admin,
    )

``authorize`` gets the Flask request and runs inside the request context, so ``session``,
``g`` and Flask-Login's ``current_user`` work as in any view; it must return ``True`` to let
the request in. The Replay form carries the dashboard's own CSRF token (double submit), so the
view is exempted from Flask-WTF's ``CSRFProtect`` when the app uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

try:
    import flask
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "webhook_guard.dashboard.flask needs Flask: pip install 'webhook-guard[flask]'"
    ) from error

from webhook_guard.core.headers import Headers
from webhook_guard.dashboard.app import Dashboard, DashboardSource, RequestInfo
from webhook_guard.exceptions import ConfigurationError, PayloadTooLarge

__all__ = ["mount_flask"]

DEFAULT_PREFIX = "/admin/webhooks"


def mount_flask(
    app: flask.Flask,
    queue: DashboardSource,
    *,
    authorize: Callable[[flask.Request], bool] | None = None,
    prefix: str = DEFAULT_PREFIX,
    allow_replay: bool = True,
    endpoint: str = "webhook_guard_dashboard",
) -> Dashboard:
    """Serve the dashboard of ``queue`` at ``prefix`` in ``app``; return the ``Dashboard``.

    ``authorize`` is required: it gets the ``flask.Request`` and returns True to let it in.
    """
    if authorize is None:
        raise ConfigurationError(
            "mount_flask needs authorize=: a function that gets the Flask request and returns "
            "True for whoever may see the delivery history (e.g. your admin check); the "
            "dashboard shows request bodies and can replay deliveries, so it is never open"
        )
    prefix = "/" + prefix.strip("/")
    check = authorize
    dashboard = Dashboard(
        queue, authorize=lambda request: check(request.native), allow_replay=allow_replay
    )

    def view(subpath: str = "") -> flask.Response:
        request = flask.request
        info = RequestInfo(
            method=request.method,
            path=request.path[len(prefix) :] or "/",
            query=request.query_string.decode("latin-1"),
            base=quote(request.script_root.rstrip("/") + prefix, safe="/"),
            headers=Headers(request.headers.items()),
            remote_addr=request.remote_addr,
            scheme=request.scheme,
            native=request._get_current_object(),  # type: ignore[attr-defined]
        )
        response = dashboard.respond(info, lambda cap: _read(request, cap))
        return flask.Response(response.body, status=response.status, headers=response.headers)

    methods = ["GET", "HEAD", "POST"]
    app.add_url_rule(prefix + "/", endpoint, view, methods=methods, defaults={"subpath": ""})
    app.add_url_rule(prefix + "/<path:subpath>", endpoint, view, methods=methods)
    csrf: Any = app.extensions.get("csrf")  # Flask-WTF's CSRFProtect
    if csrf is not None and callable(getattr(csrf, "exempt", None)):
        csrf.exempt(view)
    return dashboard


def _read(request: flask.Request, cap: int) -> bytes:
    if request.content_length is not None and request.content_length > cap:
        raise PayloadTooLarge(f"the form is over {cap} bytes")
    data: bytes = request.get_data(cache=False)
    if len(data) > cap:
        raise PayloadTooLarge(f"the form is over {cap} bytes")
    return data
