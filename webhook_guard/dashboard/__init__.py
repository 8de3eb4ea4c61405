"""The delivery history as web pages: a list with filters and a chart, a page per delivery,
and a Replay button. Framework-free (WSGI and ASGI), no JavaScript, closed unless authorized.

::

    from webhook_guard.dashboard import Dashboard

    dashboard = Dashboard(queue, authorize=lambda request: ...)   # authorize is required
    dashboard.wsgi   # WSGI app;  dashboard.asgi: ASGI app

Served alone: ``webhook-guard dashboard --db webhook_guard.db`` (127.0.0.1 only). Mounted in
an app behind its login: ``webhook_guard.dashboard.flask.mount_flask``,
``webhook_guard.dashboard.django`` (``include()`` it), or ``app.mount(prefix, dashboard.asgi)``
in Starlette/FastAPI. See docs/dashboard.md.

This package imports only the standard library and webhook_guard; the ``flask`` and
``django`` modules import their framework.
"""

from __future__ import annotations

from webhook_guard.dashboard.app import (
    Authorize,
    Dashboard,
    DashboardSource,
    RequestInfo,
    Response,
    is_loopback_host,
    loopback_only,
)
from webhook_guard.dashboard.server import serve

__all__ = [
    "Authorize",
    "Dashboard",
    "DashboardSource",
    "RequestInfo",
    "Response",
    "is_loopback_host",
    "loopback_only",
    "serve",
]
