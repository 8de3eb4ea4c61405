"""Django's tasks framework only: the database backend's real worker command in a fresh process,
the URL, and a backend that cannot defer. What every engine does, this one included, is in
``test_engine_suite.py``; the harnesses are in ``engines.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.queues.engines import STALL_APP, check_worker_cli, running
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


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_handler_is_recovered_by_requeue_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`manage.py db_worker` killed with SIGKILL inside a handler: its task stays RUNNING and
    our store says `processing`, and a new db_worker never takes it (django-tasks-db has no
    heartbeat or stalled-task recovery); requeue_abandoned publishes it again as the next
    attempt, the dead one recorded as failed, and the new worker runs it to the end once."""
    import os
    import signal
    import subprocess
    import time

    from django_tasks_db.models import DBTaskResult

    from tests.adapters.transports_django import TASKS_DATABASE
    from tests.queues.engines import SECRET, accepted_id, receive, store_of
    from tests.servers import ROOT, spawn, stop, wait_until
    from webhook_guard import Guard

    with running("django-tasks", "sqlite", tmp_path, monkeypatch) as engine:
        (tmp_path / "e2e_settings.py").write_text(SETTINGS)
        (tmp_path / "manage.py").write_text(MANAGE)
        (tmp_path / "stall_app.py").write_text(STALL_APP.format(secret=SECRET))
        (tmp_path / "SLOW").touch()
        runs = tmp_path / "runs.log"
        log = tmp_path / "worker.log"
        env = {
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",  # this tree's webhook_guard
            "WEBHOOK_GUARD_QUEUE": engine.queue_url(),
            "WEBHOOK_GUARD_APP": "stall_app:guard",
        }
        command = [sys.executable, "manage.py", "db_worker", f"--queue-name={engine.queue_name}"]
        command += ["--interval=0.1", "--no-startup-delay", "--no-reload"]
        queue = engine.open()
        sender = Guard(SECRET, queue=queue, endpoint="kill9", worker="external")
        delivery_id = accepted_id(receive(sender, b'{"n": 1}'))

        def worker() -> subprocess.Popen[bytes]:
            return spawn(command, env, log, cwd=tmp_path)

        def lines() -> list[str]:
            return runs.read_text().splitlines() if runs.exists() else []

        def task_statuses() -> list[str]:
            tasks = DBTaskResult.objects.using(TASKS_DATABASE).filter(queue_name=engine.queue_name)
            return sorted(str(task.status) for task in tasks.order_by("enqueued_at"))

        first = worker()
        assert wait_until(lambda: lines() == [f"start {delivery_id} 1"], 60), log.read_text()
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert task_statuses() == ["RUNNING"]
        assert store_of(sender).get(delivery_id).status == "processing"
        # An attempt younger than older_than is left alone (its worker may be alive).
        assert queue.requeue_abandoned(3600) == []
        (tmp_path / "SLOW").unlink()
        second = worker()
        try:
            time.sleep(1.5)  # the new worker polls every 0.1 s: it leaves the RUNNING task alone
            assert lines() == [f"start {delivery_id} 1"] and task_statuses() == ["RUNNING"]
            # 1 s: this test knows the worker is dead; in production, above handler_timeout.
            assert queue.requeue_abandoned(1.0) == [delivery_id]
            assert wait_until(lambda: len(lines()) == 3, 60), log.read_text()
            assert wait_until(lambda: "SUCCESSFUL" in task_statuses(), 30)
        finally:
            stop(second)
        assert lines() == [
            f"start {delivery_id} 1",
            f"start {delivery_id} 2",
            f"done {delivery_id}",
        ]
        record = store_of(sender).get(delivery_id)
        assert record.status == "processed"
        assert [a.outcome for a in record.attempt_log] == ["failed", "processed"]
        assert "abandoned" in (record.attempt_log[0].error or "")
        assert queue.requeue_abandoned(1.0) == []  # nothing twice
        assert task_statuses() == ["RUNNING", "SUCCESSFUL"]  # the dead one stays RUNNING
