"""A Django project laid out as `django-admin startproject` makes it (not a sample), with its
database on PostgreSQL: two ENDPOINTS on one default store whose handlers write model rows
through the ORM, under real gunicorn (WSGI) and uvicorn (ASGI), with the embedded consumer and
with `manage.py webhook_guard_worker`; and a worker whose database connection is killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("django")
psycopg = pytest.importorskip("psycopg")

from tests.contract import HTTPTransport  # noqa: E402
from tests.servers import BIN, free_port, stop, wait_for_port, wait_until  # noqa: E402
from tests.services import require_service  # noqa: E402
from webhook_guard.testing import sign_request  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.services]
SECRET = "django-project-secret"
PG = "host=127.0.0.1 port=5432 user=postgres"

FILES = {
    "manage.py": """
        import os, sys
        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
            from django.core.management import execute_from_command_line
            execute_from_command_line(sys.argv)
    """,
    "mysite/__init__.py": "",
    "mysite/settings.py": """
        import os
        SECRET_KEY = "project-tests-only"
        DEBUG = False
        ALLOWED_HOSTS = ["*"]
        USE_TZ = True
        ROOT_URLCONF = "mysite.urls"
        INSTALLED_APPS = [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "webhook_guard.adapters.django",
            "shop",
        ]
        MIDDLEWARE = [
            "webhook_guard.adapters.django.WebhookGuardMiddleware",
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ]
        DATABASES = {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": os.environ["PG_DATABASE"],
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": "5432",
                # Persistent connections when asked, as production settings often have them.
                "CONN_MAX_AGE": None if os.environ.get("PERSISTENT_DB") else 0,
            }
        }
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        WEBHOOK_GUARD = {
            "ENDPOINTS": {
                "/hooks/orders": {
                    "SECRET": os.environ["WEBHOOK_SECRET"],
                    "HANDLERS": ["shop.hooks.on_order"],
                },
                "/hooks/github": {
                    "SECRET": os.environ["WEBHOOK_SECRET"],
                    "HANDLERS": ["shop.hooks.on_github"],
                },
            }
        }
    """,
    "mysite/urls.py": """
        from django.http import JsonResponse
        from django.urls import path
        urlpatterns = [path("health", lambda request: JsonResponse({"ok": True}))]
    """,
    "mysite/wsgi.py": """
        import os
        from django.core.wsgi import get_wsgi_application
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        application = get_wsgi_application()
    """,
    "mysite/asgi.py": """
        import os
        from django.core.asgi import get_asgi_application
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        application = get_asgi_application()
    """,
    "shop/__init__.py": "",
    "shop/models.py": """
        from django.db import models
        class Handled(models.Model):
            route = models.CharField(max_length=20)
            delivery = models.CharField(max_length=64)
            attempt = models.IntegerField()
    """,
    "shop/hooks.py": """
        from webhook_guard import Retry
        from shop.models import Handled

        def on_order(delivery):
            fail = delivery.json().get("fail")
            if fail and delivery.attempt == 1:
                raise Retry(after=float(fail))
            Handled.objects.create(route="orders", delivery=delivery.id, attempt=delivery.attempt)

        def on_github(delivery):
            Handled.objects.create(route="github", delivery=delivery.id, attempt=delivery.attempt)
    """,
}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The project in ``tmp_path``, a fresh PostgreSQL database migrated for it, and the
    environment to run it with; the database is dropped afterwards."""
    require_service("PostgreSQL", 5432)
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    database = f"wg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "PYTHONPATH": str(tmp_path),
        "PG_DATABASE": database,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_GUARD_DB": str(tmp_path / "webhooks.db"),
    }
    env.pop("WEBHOOK_GUARD_WORKER", None)
    try:
        manage(tmp_path, env, "makemigrations", "shop")
        manage(tmp_path, env, "migrate", "--noinput")
        yield tmp_path, env
    finally:
        with psycopg.connect(PG + " dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def manage(root: Path, env: dict[str, str], *args: str) -> None:
    """`python manage.py ...` in the project; fails the test with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@contextmanager
def server(root: Path, env: dict[str, str], kind: str) -> Iterator[int]:
    """gunicorn (WSGI) or uvicorn (ASGI) serving the project; yields the port."""
    port = free_port()
    if kind == "gunicorn":
        command = [str(BIN / "gunicorn"), "mysite.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    else:
        command = [str(BIN / "uvicorn"), "mysite.asgi:application", "--port", str(port)]
    log = root / f"{kind}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, process, log)
        yield port
    finally:
        stop(process)


def post(port: int, path: str, payload: dict[str, object]) -> str:
    """A signed delivery over HTTP; returns its id."""
    body = json.dumps(payload).encode()
    reply = HTTPTransport("127.0.0.1", port).request(
        "POST", path, sign_request("cloudaipilot", SECRET, body), body
    )
    assert reply.status == 200, reply.body
    return str(reply.json()["id"])


def rows(env: dict[str, str]) -> list[tuple[str, str, int]]:
    """(route, delivery id, attempt) of every row the handlers wrote through the ORM."""
    with psycopg.connect(PG + f" dbname={env['PG_DATABASE']}") as conn:
        return list(conn.execute("SELECT route, delivery, attempt FROM shop_handled"))


def send_both(port: int) -> dict[str, str]:
    """Three orders (one retried once) and three GitHub deliveries: id -> the route it needs."""
    owners = {
        post(port, "/hooks/orders", {"n": i, "fail": 0.2 if i == 0 else 0}): "orders"
        for i in range(3)
    }
    owners.update({post(port, "/hooks/github", {"n": 10 + i}): "github" for i in range(3)})
    return owners


def assert_each_ran_once(env: dict[str, str], owners: dict[str, str]) -> None:
    assert wait_until(lambda: len(rows(env)) >= len(owners), limit=40), rows(env)
    time.sleep(0.3)  # a second (wrong) run would show up by now
    assert sorted((route, id_) for route, id_, _ in rows(env)) == sorted(
        (route, id_) for id_, route in owners.items()
    )


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
def test_two_endpoints_write_through_the_orm_embedded(
    project: tuple[Path, dict[str, str]], kind: str
) -> None:
    """Embedded consumer: each delivery writes one row, through its own endpoint's handler."""
    root, env = project
    with server(root, env, kind) as port:
        assert_each_ran_once(env, send_both(port))


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
def test_two_endpoints_write_through_the_orm_with_the_management_command(
    project: tuple[Path, dict[str, str]], kind: str
) -> None:
    """WEBHOOK_GUARD_WORKER=external: the server only receives; `manage.py
    webhook_guard_worker` runs every endpoint's handlers with the ORM and stops on SIGTERM."""
    root, env = project
    with server(root, {**env, "WEBHOOK_GUARD_WORKER": "external"}, kind) as port:
        owners = send_both(port)
        time.sleep(1.0)
        assert rows(env) == [], "an external-worker server ran handlers itself"
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "webhook_guard_worker"],
            cwd=root,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert_each_ran_once(env, owners)
        finally:
            worker.terminate()
            _, errors = worker.communicate(timeout=30)
        assert worker.returncode == 0, errors


def test_the_worker_recovers_from_a_killed_database_connection(
    project: tuple[Path, dict[str, str]],
) -> None:
    """PostgreSQL terminates the worker's connection between two deliveries: the next one is
    still written (the dead connection is closed and a new one opened, at worst on a retry)."""
    root, env = project
    env = {**env, "PERSISTENT_DB": "1"}
    with server(root, {**env, "WEBHOOK_GUARD_WORKER": "external"}, "gunicorn") as port:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "webhook_guard_worker"],
            cwd=root,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            first = post(port, "/hooks/github", {"n": 1})
            assert wait_until(lambda: len(rows(env)) == 1, limit=40)
            with psycopg.connect(PG + " dbname=postgres", autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (env["PG_DATABASE"],),
                ).fetchall()
            assert killed, "the worker held a connection"
            second = post(port, "/hooks/github", {"n": 2})
            assert wait_until(lambda: len(rows(env)) == 2, limit=40), rows(env)
        finally:
            worker.terminate()
            worker.communicate(timeout=30)
    assert sorted(id_ for _, id_, _ in rows(env)) == sorted([first, second])
