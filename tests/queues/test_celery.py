"""Celery only: its worker CLI in a fresh process. What every engine does, Celery included (on
Redis and on RabbitMQ), is in ``test_engine_suite.py``; the harnesses are in ``engines.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.queues.engines import check_worker_cli, running
from tests.servers import BIN

pytest.importorskip("celery")

pytestmark = pytest.mark.services


@pytest.mark.timeout(120)
def test_the_celery_cli_worker_finds_the_guard_by_webhook_guard_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`celery -A webhook_guard.queues.celery:celery_app worker` runs WEBHOOK_GUARD_APP's Guard."""
    with running("celery+redis", "sqlite", tmp_path, monkeypatch) as engine:
        command = [str(BIN / "celery"), "-A", "webhook_guard.queues.celery:celery_app", "worker"]
        command += ["-Q", engine.queue_name, "--pool", "solo", "--without-mingle"]
        check_worker_cli(engine, [*command, "--without-gossip", "--loglevel", "INFO"])


@pytest.mark.timeout(120)
def test_the_celery_cli_worker_imports_the_guard_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's Celery command, run beside the Guard module with no PYTHONPATH, imports it
    (celery's console script does not put the current directory on sys.path by itself)."""
    with running("celery+redis", "sqlite", tmp_path, monkeypatch) as engine:
        command = [str(BIN / "celery"), "-A", "webhook_guard.queues.celery:celery_app", "worker"]
        command += ["-Q", engine.queue_name, "--pool", "solo", "--without-mingle"]
        command += ["--without-gossip", "--loglevel", "INFO"]
        check_worker_cli(engine, command, pythonpath=False)
