"""Django's own WSGI and ASGI handlers with WebhookGuardMiddleware first, around a contract Guard.

Django settings can be configured once per process, so ``configure()`` does it on first use with
``TEST_SETTINGS``. Its ``WEBHOOK_GUARD["ENDPOINTS"]`` is the module-level ``ENDPOINTS`` dict:
``use_guard(guard)`` puts a Guard under the contract path, and the adapter's conf rebuilds its
cached Guard whenever the object under a path changes, so nothing else needs resetting.

The test URLconf (``tests.adapters.django.urls``) has a sync and an async view on other paths, so
pass-through is checked under both handlers (``tests/adapters/django/test_middleware.py``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from tests.contract import PATH, ASGITransport, Transport, WSGITransport
from webhook_guard.core.guard import Guard

OUR_MIDDLEWARE = "webhook_guard.adapters.django.WebhookGuardMiddleware"
ENDPOINTS: dict[str, Any] = {}  # settings.WEBHOOK_GUARD["ENDPOINTS"] is this very dict
MIDDLEWARE = [
    OUR_MIDDLEWARE,
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEST_SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "webhook-guard-tests-only",
    "ALLOWED_HOSTS": ["testserver", "127.0.0.1", "localhost"],
    "INSTALLED_APPS": [
        "webhook_guard.adapters.django",
        "django.contrib.contenttypes",
        "django.contrib.auth",
    ],
    "MIDDLEWARE": MIDDLEWARE,
    "ROOT_URLCONF": "tests.adapters.django.urls",
    "DATABASES": {"default": {"ENGINE": "django.db.backends.dummy"}},
    "SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies",
    "USE_TZ": True,
    "WEBHOOK_GUARD": {"ENDPOINTS": ENDPOINTS},
}

# Django's tasks framework (the django-tasks engine's harness, tests/queues/engines.py): its
# database backend's table lives in a PostgreSQL database of the tests' own, TASKS_DATABASE,
# and TasksRouter sends that app's models there (nothing else has a database). Settings are
# configured once per process, so they are part of the one configuration every test shares.
TASKS_DATABASE = "webhook_guard_tasks"
TASKS_DB_NAME = "webhook_guard_django_tasks"
if importlib.util.find_spec("django_tasks_db") is not None:
    TEST_SETTINGS["INSTALLED_APPS"] += ["django_tasks", "django_tasks_db"]
    TEST_SETTINGS["DATABASES"][TASKS_DATABASE] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": TASKS_DB_NAME,
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "OPTIONS": {"connect_timeout": 2},  # a down database: 503 quickly
    }
    TEST_SETTINGS["DATABASE_ROUTERS"] = ["tests.adapters.transports_django.TasksRouter"]
    TEST_SETTINGS["TASKS"] = {
        # QUEUES empty: any queue name (each test enqueues to a queue of its own).
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []},
        # Runs a task at once, in enqueue: it cannot defer one (no run_after).
        "immediate": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"},
    }


class TasksRouter:
    """The tasks database backend's models go to ``database``, and nothing else migrates
    there. A test may point ``database`` at another alias (a database on a port nothing
    listens on) for its duration."""

    database = TASKS_DATABASE
    app_label = "django_tasks_database"

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self.database if model._meta.app_label == self.app_label else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self.db_for_read(model)

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if db == TasksRouter.database or app_label == self.app_label:
            return db == TasksRouter.database and app_label == self.app_label
        return None


def configure() -> None:
    """Configure Django for this process once; skip the calling test if Django is missing."""
    pytest.importorskip("django")
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**TEST_SETTINGS)
        django.setup()


def use_guard(guard: Guard, path: str = PATH) -> None:
    """Make ``guard`` answer ``path`` from the next request on."""
    configure()
    ENDPOINTS.clear()
    ENDPOINTS[path] = guard


class _OwnGuard(Transport):
    """Puts its Guard under the path before each request, so that several Django transports
    (the differential fuzz builds one per handler) each answer with their own Guard."""

    def __init__(self, guard: Guard, inner: Transport) -> None:
        self.guard, self.inner = guard, inner

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if ENDPOINTS.get(PATH) is not self.guard:
            use_guard(self.guard)
        return self.inner.request(*args, **kwargs)


def django_wsgi(guard: Guard) -> Transport:
    use_guard(guard)
    from django.core.handlers.wsgi import WSGIHandler

    return _OwnGuard(guard, WSGITransport(WSGIHandler()))


def django_asgi(guard: Guard) -> Transport:
    use_guard(guard)
    from django.core.handlers.asgi import ASGIHandler

    return _OwnGuard(guard, ASGITransport(ASGIHandler()))


TRANSPORTS = {"django-wsgi": django_wsgi, "django-asgi": django_asgi}
