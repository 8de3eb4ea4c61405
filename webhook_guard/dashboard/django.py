"""Mount the dashboard in a Django project, for staff users by default.

::

    # urls.py
    urlpatterns = [
        path("admin/webhooks/", include("webhook_guard.dashboard.django")),
        ...
    ]

    # settings.py (all optional)
    WEBHOOK_GUARD_DASHBOARD = {
        "DB": BASE_DIR / "webhook_guard.db",       # default: $WEBHOOK_GUARD_DB, ./webhook_guard.db
        "AUTHORIZE": "myproject.auth.may_see_webhooks",  # default: active staff users
        "ALLOW_REPLAY": True,
    }

Or build the patterns yourself: ``path("admin/webhooks/", include(dashboard_urls(queue,
authorize=...)))``. ``AUTHORIZE`` (a callable or its dotted path) gets the ``HttpRequest`` and
must return True; the default, ``is_staff``, lets in ``request.user.is_active and
request.user.is_staff`` (``AuthenticationMiddleware`` sets ``request.user``; an anonymous user is
refused).

CSRF: the Replay form is checked by the dashboard's own double-submit token (the same check
under every framework), so the view is ``csrf_exempt``: Django's middleware would otherwise ask
for its own token, which the framework-free pages do not carry.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

try:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.http import HttpRequest, HttpResponse
    from django.urls import URLPattern, path, re_path
    from django.utils.module_loading import import_string
    from django.views.decorators.csrf import csrf_exempt
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "webhook_guard.dashboard.django needs Django: pip install 'webhook-guard[django]'"
    ) from error

from webhook_guard.core.config import DEFAULT_DB_PATH
from webhook_guard.core.headers import Headers
from webhook_guard.core.wiring import is_postgres_url, open_store
from webhook_guard.dashboard.app import Dashboard, DashboardSource, RequestInfo
from webhook_guard.exceptions import ConfigurationError, PayloadTooLarge
from webhook_guard.queues.sqlite import SQLiteQueue

__all__ = ["SETTING", "dashboard_urls", "dashboard_view", "is_staff", "urlpatterns"]

SETTING = "WEBHOOK_GUARD_DASHBOARD"
DjangoAuthorize = Callable[[HttpRequest], bool]


def is_staff(request: HttpRequest) -> bool:
    """The default: an active staff user (``AuthenticationMiddleware`` must be installed)."""
    user = getattr(request, "user", None)
    if user is None:
        raise ImproperlyConfigured(
            "the webhook_guard dashboard's default authorize reads request.user: add "
            "django.contrib.auth.middleware.AuthenticationMiddleware to MIDDLEWARE, or set "
            f"{SETTING}['AUTHORIZE']"
        )
    return bool(user.is_active and user.is_staff)


def dashboard_urls(
    queue: DashboardSource,
    *,
    authorize: DjangoAuthorize = is_staff,
    allow_replay: bool = True,
) -> list[URLPattern]:
    """URL patterns serving the dashboard of ``queue``; ``include()`` them under a prefix."""
    dashboard = _dashboard(queue, authorize, allow_replay)

    def view(request: HttpRequest, subpath: str = "") -> HttpResponse:
        return _serve(dashboard, request, subpath)

    return _patterns(csrf_exempt(view))


def dashboard_view(request: HttpRequest, subpath: str = "") -> HttpResponse:
    """The dashboard configured by ``settings.WEBHOOK_GUARD_DASHBOARD``."""
    return _serve(_from_settings(), request, subpath)


def _dashboard(queue: DashboardSource, authorize: Any, allow_replay: bool) -> Dashboard:
    if authorize is None:
        raise ConfigurationError(
            "the webhook_guard dashboard needs an authorize function; the default is is_staff"
        )
    check: DjangoAuthorize = authorize
    return Dashboard(
        queue, authorize=lambda request: check(request.native), allow_replay=allow_replay
    )


_cache: dict[tuple[str, Any, bool], Dashboard] = {}
_cache_lock = threading.Lock()


def _from_settings() -> Dashboard:
    """Read on every request (cheap), build once per distinct setting."""
    config: dict[str, Any] = dict(getattr(settings, SETTING, None) or {})
    unknown = set(config) - {"DB", "AUTHORIZE", "ALLOW_REPLAY"}
    if unknown:
        raise ImproperlyConfigured(f"{SETTING}: unknown keys {sorted(unknown)}")
    db = os.fspath(config.get("DB") or os.environ.get("WEBHOOK_GUARD_DB") or DEFAULT_DB_PATH)
    authorize = config.get("AUTHORIZE", is_staff)
    if isinstance(authorize, str):
        authorize = import_string(authorize)
    if not callable(authorize):
        raise ImproperlyConfigured(f"{SETTING}['AUTHORIZE'] must be a callable or its path")
    key = (db, authorize, bool(config.get("ALLOW_REPLAY", True)))
    with _cache_lock:
        if key not in _cache:
            # A PostgreSQL URL names the shared store; anything else is a SQLite path.
            source: Any = open_store(db) if is_postgres_url(db) else SQLiteQueue(db)
            _cache[key] = _dashboard(source, authorize, key[2])
        return _cache[key]


def _serve(dashboard: Dashboard, request: HttpRequest, subpath: str) -> HttpResponse:
    full = request.path
    base = full[: len(full) - len(subpath)] if subpath and full.endswith(subpath) else full
    info = RequestInfo(
        method=(request.method or "GET").upper(),
        path="/" + subpath,
        query=request.META.get("QUERY_STRING", ""),
        base=quote(base.rstrip("/"), safe="/"),
        headers=Headers(request.headers.items()),
        remote_addr=request.META.get("REMOTE_ADDR"),
        scheme=request.scheme or "http",
        native=request,
    )
    answer = dashboard.respond(info, lambda cap: _read(request, cap))
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        if name.lower() == "set-cookie":
            response.cookies.load(SimpleCookie(value))  # through Django's cookie jar
        elif name.lower() != "content-length":
            response[name] = value
    return response


def _read(request: HttpRequest, cap: int) -> bytes:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > cap:
        raise PayloadTooLarge(f"the form is over {cap} bytes")
    return request.body[: cap + 1]


def _patterns(view: Callable[..., HttpResponse]) -> list[URLPattern]:
    return [
        path("", view, name="webhook_guard_dashboard"),
        re_path(r"^(?P<subpath>.+)$", view, name="webhook_guard_dashboard_page"),
    ]


urlpatterns = _patterns(csrf_exempt(dashboard_view))
