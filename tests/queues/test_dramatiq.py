"""Dramatiq only: its worker CLI in a fresh process. What every engine does, Dramatiq included
(on Redis and on RabbitMQ), is in ``test_engine_suite.py``; the harnesses are in ``engines.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.queues.engines import check_worker_cli, running
from tests.servers import BIN

pytest.importorskip("dramatiq")

pytestmark = pytest.mark.services


@pytest.mark.timeout(120)
def test_the_dramatiq_cli_worker_finds_the_guard_by_webhook_guard_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dramatiq webhook_guard.queues.dramatiq:broker` runs WEBHOOK_GUARD_APP's Guard's handler."""
    with running("dramatiq+redis", "sqlite", tmp_path, monkeypatch) as engine:
        command = [str(BIN / "dramatiq"), "webhook_guard.queues.dramatiq:broker"]
        command += ["--queues", engine.queue_name, "--processes", "1", "--threads", "1"]
        check_worker_cli(engine, command)
