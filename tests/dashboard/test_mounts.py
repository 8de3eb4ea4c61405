"""The dashboard mounted in Flask, Django and Starlette, behind each app's own auth."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.dashboard.history import History, build_history
from webhook_guard.dashboard import Dashboard, RequestInfo
from webhook_guard.dashboard.app import CSRF_COOKIE

NOW = 1_800_000_000.0
PREFIX = "/admin/webhooks"


@pytest.fixture
def history(tmp_path: Path) -> History:
    """A fresh history per test: the mounts replay."""
    return build_history(tmp_path / "q.db", now=NOW, spread=3600)


def token_from(set_cookie: str) -> str:
    match = re.search(rf"{CSRF_COOKIE}=([A-Za-z0-9_-]+)", set_cookie)
    assert match, set_cookie
    return match.group(1)


def assert_dead_was_replayed(history: History) -> None:
    record = history.queue().get(history.dead[0])
    assert record is not None and (record.status, record.attempts) == ("queued", 0)


def assert_links_under_prefix(body: str, history: History) -> None:
    assert f'href="{PREFIX}/delivery/{history.dead[0]}"' in body
    assert f'action="{PREFIX}/delivery/{history.dead[0]}/replay"' in body
    assert f'href="{PREFIX}/"' in body


# -- Flask -----------------------------------------------------------------------------------


def test_flask_mount_authorizes_with_the_flask_request_and_replays(history: History) -> None:
    """mount_flask: authorize reads Flask's session; links carry the prefix; replay round trip."""
    flask = pytest.importorskip("flask")
    from webhook_guard.dashboard.flask import mount_flask

    app = flask.Flask(__name__)
    app.secret_key = "tests-only"

    @app.post("/login")
    def login() -> str:
        flask.session["admin"] = True
        return "ok"

    seen: list[Any] = []

    def is_admin(request: Any) -> bool:
        seen.append(request)
        return flask.session.get("admin") is True

    mount_flask(app, history.queue(), prefix=PREFIX, authorize=is_admin)
    client = app.test_client()
    assert client.get(f"{PREFIX}/").status_code == 403
    assert isinstance(seen[0], flask.Request)

    client.post("/login")
    page = client.get(f"{PREFIX}/")
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert_links_under_prefix(page.get_data(as_text=True), history)
    token = token_from(page.headers["Set-Cookie"])
    detail = client.get(f"{PREFIX}/delivery/{history.dead[0]}")
    assert detail.status_code == 200 and "Traceback" in detail.get_data(as_text=True)

    url = f"{PREFIX}/delivery/{history.dead[0]}/replay"
    assert client.post(url, data={"back": "detail"}).status_code == 403  # no token
    answer = client.post(url, data={"csrf": token, "back": "detail"})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"{PREFIX}/delivery/{history.dead[0]}?replayed=1")
    assert_dead_was_replayed(history)


def test_flask_mount_refuses_to_mount_without_authorize(history: History) -> None:
    """mount_flask without authorize raises ConfigurationError, before any route exists."""
    flask = pytest.importorskip("flask")
    from webhook_guard.dashboard.flask import mount_flask
    from webhook_guard.exceptions import ConfigurationError

    app = flask.Flask(__name__)
    with pytest.raises(ConfigurationError, match="authorize"):
        mount_flask(app, history.queue(), prefix=PREFIX)
    assert not [r for r in app.url_map.iter_rules() if r.rule.startswith(PREFIX)]


def test_werkzeug_dispatcher_mount_follows_script_name(history: History) -> None:
    """DispatcherMiddleware: the dashboard's WSGI app under a prefix, links included."""
    pytest.importorskip("werkzeug")
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    dashboard = Dashboard(
        history.queue(),
        authorize=lambda request: request.native.get("HTTP_X_ADMIN") == "1",
        clock=lambda: NOW,
    )
    host = Response("host app")
    app = DispatcherMiddleware(host, {PREFIX: dashboard.wsgi})
    client = Client(app)
    assert client.get(f"{PREFIX}/").status_code == 403
    page = client.get(f"{PREFIX}/", headers={"X-Admin": "1"})
    assert page.status_code == 200
    assert_links_under_prefix(page.get_data(as_text=True), history)


# -- Django ----------------------------------------------------------------------------------


@pytest.fixture
def django_settings(history: History) -> Iterator[None]:
    """Django configured once per process (the adapter tests' settings), then this URLconf."""
    pytest.importorskip("django")
    from django.test import override_settings

    from tests.adapters.transports_django import configure

    configure()
    with override_settings(
        ROOT_URLCONF="tests.dashboard.django_urls",
        WEBHOOK_GUARD_DASHBOARD={"DB": str(history.db)},
    ):
        yield


def test_django_default_authorize_refuses_anonymous_and_admits_staff(
    history: History, django_settings: None
) -> None:
    """include('webhook_guard.dashboard.django'): anonymous 403 through the real middleware;
    an active staff user gets the page with links under the include's prefix."""
    from django.contrib.auth.models import User
    from django.test import Client, RequestFactory
    from django.urls import resolve

    anonymous = Client().get(f"{PREFIX}/")
    assert anonymous.status_code == 403
    assert history.dead[0] not in anonymous.content.decode()

    for user, expected in (
        (User(username="ops", is_active=True, is_staff=True), 200),
        (User(username="sales", is_active=True, is_staff=False), 403),
        (User(username="gone", is_active=False, is_staff=True), 403),
    ):
        request = RequestFactory().get(f"{PREFIX}/")
        request.user = user
        match = resolve(request.path_info)
        response = match.func(request, *match.args, **match.kwargs)
        assert response.status_code == expected, user.username
        if expected == 200:
            assert_links_under_prefix(response.content.decode(), history)
            assert response["Content-Security-Policy"].startswith("default-src 'none'")


def test_django_replay_uses_our_token_under_djangos_csrf_middleware(
    history: History, django_settings: None
) -> None:
    """With CsrfViewMiddleware installed, the POST is checked by the dashboard's token: 403
    without it, 303 and re-queued with it."""
    from django.test import Client, override_settings

    with override_settings(
        WEBHOOK_GUARD_DASHBOARD={
            "DB": str(history.db),
            "AUTHORIZE": "tests.dashboard.django_urls.header_staff",
        }
    ):
        client = Client(enforce_csrf_checks=True, HTTP_X_TEST_STAFF="yes")
        assert Client().get(f"{PREFIX}/").status_code == 403  # no header: not staff
        page = client.get(f"{PREFIX}/")
        assert page.status_code == 200
        token = page.cookies[CSRF_COOKIE].value
        assert page.cookies[CSRF_COOKIE]["samesite"] == "Strict"
        assert page.cookies[CSRF_COOKIE]["path"] == f"{PREFIX}/"
        url = f"{PREFIX}/delivery/{history.dead[0]}/replay"
        form = "application/x-www-form-urlencoded"  # what a browser sends for the form
        assert client.post(url, "back=detail", content_type=form).status_code == 403
        answer = client.post(url, urlencode({"csrf": token, "back": "detail"}), content_type=form)
        assert answer.status_code == 303, answer.content
        assert answer["Location"] == f"{PREFIX}/delivery/{history.dead[0]}?replayed=1"
    assert_dead_was_replayed(history)


def test_django_dashboard_urls_with_an_explicit_queue(
    history: History, django_settings: None
) -> None:
    """dashboard_urls(queue, authorize=...) builds patterns to include anywhere."""
    from django.test import RequestFactory
    from django.urls import include, path, resolve

    from webhook_guard.dashboard.django import dashboard_urls

    urls = dashboard_urls(history.queue(), authorize=lambda request: request.GET.get("k") == "1")
    urlconf = types.ModuleType("ops_urls")  # resolve() caches by urlconf: it must hash
    urlconf.urlpatterns = [path("ops/hooks/", include(urls))]  # type: ignore[attr-defined]
    for query, expected in (("", 403), ("k=1", 200)):
        request = RequestFactory().get(f"/ops/hooks/delivery/{history.dead[0]}", QUERY_STRING=query)
        match = resolve(request.path_info, urlconf=urlconf)
        response = match.func(request, *match.args, **match.kwargs)
        assert response.status_code == expected
    assert 'href="/ops/hooks/"' in response.content.decode()


# -- Starlette (ASGI) ------------------------------------------------------------------------


def test_starlette_mount_uses_the_apps_authentication(history: History) -> None:
    """app.mount(prefix, dashboard.asgi): authorize reads scope["auth"] set by Starlette's
    AuthenticationMiddleware; root_path links; replay round trip."""
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.applications import Starlette
    from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    class HeaderAuth(AuthenticationBackend):
        async def authenticate(
            self, conn: HTTPConnection
        ) -> tuple[AuthCredentials, SimpleUser] | None:
            if conn.headers.get("x-user") == "admin":
                return AuthCredentials(["admin"]), SimpleUser("admin")
            return None

    def is_admin(request: RequestInfo) -> bool:
        return "admin" in request.native["auth"].scopes

    dashboard = Dashboard(history.queue(), authorize=is_admin, clock=lambda: NOW)
    app = Starlette(
        routes=[Mount(PREFIX, app=dashboard.asgi)],
        middleware=[Middleware(AuthenticationMiddleware, backend=HeaderAuth())],
    )
    with TestClient(app, follow_redirects=False) as client:
        assert client.get(f"{PREFIX}/").status_code == 403
        client.headers["x-user"] = "admin"
        page = client.get(f"{PREFIX}/")
        assert page.status_code == 200
        assert_links_under_prefix(page.text, history)
        detail = client.get(f"{PREFIX}/delivery/{history.dead[0]}")
        assert detail.status_code == 200 and history.dead[0] in detail.text
        token = token_from(page.headers["set-cookie"])
        url = f"{PREFIX}/delivery/{history.dead[0]}/replay"
        assert client.post(url, data={"back": "detail"}).status_code == 403
        answer = client.post(url, data={"csrf": token, "back": "detail"})
        assert answer.status_code == 303
        assert answer.headers["location"] == f"{PREFIX}/delivery/{history.dead[0]}?replayed=1"
    assert_dead_was_replayed(history)
