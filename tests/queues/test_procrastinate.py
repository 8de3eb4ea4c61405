"""procrastinate only: its worker CLI in a fresh process, and its URL. What every engine does,
procrastinate included, is in ``test_engine_suite.py``; the harnesses are in ``engines.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.queues.engines import check_worker_cli, running
from tests.servers import BIN
from webhook_guard.exceptions import ConfigurationError

pytest.importorskip("procrastinate")

from webhook_guard.queues.procrastinate import split_url  # after the skip: needs the engine

pytestmark = pytest.mark.services


@pytest.mark.timeout(120)
def test_the_procrastinate_cli_worker_finds_the_guard_by_webhook_guard_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`procrastinate --app=webhook_guard.queues.procrastinate.app worker --queues=<name>`, run
    from the project directory with no PYTHONPATH, runs WEBHOOK_GUARD_APP's Guard's handler,
    and a retry it defers itself."""
    with running("procrastinate", "sqlite", tmp_path, monkeypatch) as engine:
        command = [str(BIN / "procrastinate"), "--app=webhook_guard.queues.procrastinate.app"]
        command += ["worker", f"--queues={engine.queue_name}"]
        check_worker_cli(engine, command, pythonpath=False)


def test_the_url_names_the_database_the_queue_and_the_store() -> None:
    dsn, store, queue = split_url(
        "procrastinate+postgresql://app@db.internal:5433/shop?queue=hooks"
        "&store=redis://r:6379/1&sslmode=require"
    )
    assert dsn == "postgresql://app@db.internal:5433/shop?sslmode=require"
    assert (store, queue) == ("redis://r:6379/1", "hooks")
    assert split_url("procrastinate+postgres://h/db")[0] == "postgresql://h/db"
    with pytest.raises(ConfigurationError, match="procrastinate"):
        split_url("postgresql://h/db")


def test_the_repr_names_the_database_never_its_password(tmp_path: Path) -> None:
    from webhook_guard.queues.procrastinate import from_url

    queue = from_url(f"procrastinate+postgresql://app:hunter2@db:5432/shop?store={tmp_path}/s.db")
    assert "hunter2" not in repr(queue) and "db:5432/shop" in repr(queue)
