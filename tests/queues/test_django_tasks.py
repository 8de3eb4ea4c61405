"""Django's tasks framework only: the database backend's real worker command in a fresh process,
the URL, and a backend that cannot defer. What every engine does, this one included, is in
``test_engine_suite.py``; the harnesses are in ``engines.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.queues.engines import check_worker_cli, running
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable

pytest.importorskip("django_tasks")
pytest.importorskip("django_tasks_db")

from tests.adapters.transports_django import TASKS_DB_NAME, configure

configure()  # the engine module declares its task on the configured TASKS backend

from webhook_guard.queues.django_tasks import (  # noqa: E402 - after Django is configured
    DjangoTasksQueue,
    from_url,
    split_url,
)

pytestmark = pytest.mark.services

# The smallest Django project a user has: settings naming the database backend, and manage.py.
SETTINGS = f"""
SECRET_KEY = "e2e"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_tasks", "django_tasks_db"]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": {TASKS_DB_NAME!r},
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }}
}}
TASKS = {{"default": {{"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}}}
"""
MANAGE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "e2e_settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""


@pytest.mark.timeout(120)
def test_the_db_worker_command_finds_the_guard_by_webhook_guard_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python manage.py db_worker --queue-name <name>`, run from the project directory with no
    PYTHONPATH, runs WEBHOOK_GUARD_APP's Guard's handler, and a retry it enqueues itself."""
    with running("django-tasks", "sqlite", tmp_path, monkeypatch) as engine:
        (tmp_path / "e2e_settings.py").write_text(SETTINGS)
        (tmp_path / "manage.py").write_text(MANAGE)
        command = [sys.executable, "manage.py", "db_worker", f"--queue-name={engine.queue_name}"]
        command += ["--interval=0.1", "--no-startup-delay", "--no-reload"]
        check_worker_cli(engine, command, pythonpath=False)


def test_the_url_names_the_backend_the_queue_and_the_store() -> None:
    assert split_url("django-tasks://default?queue=hooks&store=redis://r:6379/1") == (
        "default",
        "redis://r:6379/1",
        "hooks",
    )
    assert split_url("django-tasks://webhooks") == ("webhooks", None, None)
    with pytest.raises(ConfigurationError, match="names no TASKS backend"):
        split_url("django-tasks://")
    with pytest.raises(ConfigurationError, match="django-tasks://default"):
        split_url("procrastinate+postgresql://h/db")


def test_the_queue_defaults_to_the_backends_default_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_GUARD_DB", str(tmp_path / "store.db"))
    queue = from_url("django-tasks://default")
    assert (queue.backend, queue.queue_name) == ("default", "default")
    assert repr(queue) == "<DjangoTasksQueue backend='default' queue='default'>"


def test_a_backend_that_cannot_defer_says_so_and_an_unknown_one_is_unavailable(
    tmp_path: Path,
) -> None:
    """A retry with a delay on a backend without run_after (the immediate one) is refused with
    the reason, never run early; a TASKS alias that does not exist is QueueUnavailable."""
    from webhook_guard.stores import open_store

    store = open_store(str(tmp_path / "store.db"))
    envelope = {"id": "d1", "attempt": 2}
    with pytest.raises(QueueUnavailable, match="does not support deferred tasks"):
        DjangoTasksQueue("immediate", store).publish(envelope, 1.0)
    with pytest.raises(QueueUnavailable, match="no TASKS backend 'nowhere'"):
        DjangoTasksQueue("nowhere", store).publish(envelope)
