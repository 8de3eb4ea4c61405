"""``webhook-guard`` as a real subprocess: demo, history, show, replay, purge, worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.contract import SECRET, contract_guard
from tests.servers import BIN, ROOT
from webhook_guard.core.guard import Guard
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import sign_request
from webhook_guard.worker import Worker

CLI = str(BIN / "webhook-guard")


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _history_db(tmp_path: Path) -> tuple[Guard, list[str]]:
    """A database with one processed, one dead delivery and one rejected request."""
    guard = contract_guard(
        "cloudaipilot",
        SQLiteQueue(tmp_path / "q.db"),
        clock=time.time,
        retry=RetryPolicy(max_attempts=2, base_seconds=0.01, cap_seconds=0.02),
    )
    guard.add_handler(lambda d: 1 / 0 if d.json().get("fail") else None)
    ids = []
    for payload in (b'{"event": "ok.event"}', b'{"event": "bad.event", "fail": 1}'):
        outcome = guard.receive(
            "POST", "/webhook", sign_request("cloudaipilot", SECRET, payload), payload
        )
        ids.append(json.loads(outcome.body)["id"])
    guard.receive("POST", "/webhook", {"X-CloudAIPilot-Signature": "sha256=" + "ab" * 32}, b"{}")
    Worker(guard).drain(timeout=10)
    return guard, ids


@pytest.mark.e2e
def test_demo_runs_from_any_directory_and_prints_the_history(tmp_path: Path) -> None:
    """`webhook-guard demo` serves the packaged sample and shows each outcome with its reason."""
    result = run("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '-> 200 {"status": "ok"' in out
    assert '-> 401 {"error": "signature_mismatch"}' in out
    assert '-> 200 {"status": "duplicate"' in out
    table = out.split("4. the delivery history")[1]
    assert "processed" in table and "dead" in table and "rejected" in table
    assert "signature_mismatch" in table and "gave up after 4 attempts" in table
    assert "demo-" not in out.replace("webhook-guard-demo-", ""), (
        "the demo's secret is never printed"
    )


def test_history_lists_failed_deliveries_and_rejections(tmp_path: Path) -> None:
    """--failed shows the dead delivery and the rejected request, not the processed one."""
    _, (ok_id, dead_id) = _history_db(tmp_path)
    result = run("history", "--db", str(tmp_path / "q.db"), "--failed", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["status"] for r in rows} == {"dead", "rejected"}
    assert dead_id in {r["id"] for r in rows} and ok_id not in {r["id"] for r in rows}
    rejected = next(r for r in rows if r["status"] == "rejected")
    assert rejected["detail"].startswith("signature_mismatch")
    table = run("history", "--db", str(tmp_path / "q.db")).stdout
    assert "ok.event" in table and "bad.event" in table and "ATTEMPTS" in table


def test_show_prints_every_attempt_with_its_traceback(tmp_path: Path) -> None:
    """`show ID` (by prefix) gives headers, the body preview and each attempt's traceback."""
    _, (_, dead_id) = _history_db(tmp_path)
    result = run("show", dead_id[:10], "--db", str(tmp_path / "q.db"))
    assert result.returncode == 0, result.stderr
    assert "x-cloudaipilot-delivery" in result.stdout
    assert "x-cloudaipilot-signature" not in result.stdout  # never stored, so never shown
    assert '"fail": 1' in result.stdout
    assert result.stdout.count("ZeroDivisionError") >= 2
    assert run("show", "nope", "--db", str(tmp_path / "q.db")).returncode == 1


def test_replay_dead_requeues_and_purge_forgets(tmp_path: Path) -> None:
    """`replay --dead` re-queues the dead delivery; `purge` keeps it (it is not processed)."""
    _, (_, dead_id) = _history_db(tmp_path)
    db = str(tmp_path / "q.db")
    assert run("replay", "--dead", "--db", db).returncode == 0
    assert SQLiteQueue(db).get(dead_id).status == "queued"  # type: ignore[union-attr]
    assert run("replay", "--dead", "--db", db).returncode == 1, "nothing left to replay"
    assert run("purge", "--older-than", "0s", "--db", db).returncode == 0
    assert SQLiteQueue(db).get(dead_id) is not None
    assert SQLiteQueue(db).rejections() == []


def test_usage_errors_exit_2_with_a_sentence(tmp_path: Path) -> None:
    """A bad duration, a missing database or a bad target is a usage error, said plainly."""
    missing = run("history", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no database at" in missing.stderr
    _history_db(tmp_path)
    bad = run("history", "--db", str(tmp_path / "q.db"), "--since", "yesterday")
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    target = run("worker", "no_such_module:guard")
    assert target.returncode == 2 and "cannot import" in target.stderr


def test_every_command_has_help() -> None:
    """--help works for the command and each subcommand."""
    for command in ([], ["demo"], ["worker"], ["history"], ["show"], ["replay"], ["purge"]):
        result = run(*command, "--help")
        assert result.returncode == 0 and "usage: webhook-guard" in result.stdout
    module = subprocess.run(
        [sys.executable, "-m", "webhook_guard", "--help"], capture_output=True, text=True
    )
    assert module.returncode == 0 and "demo" in module.stdout


def test_worker_burst_drains_the_queue(tmp_path: Path) -> None:
    """`worker --burst` processes what is queued for the target Guard and exits 0."""
    env = {
        **dict(__import__("os").environ),
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_GUARD_DB": str(tmp_path / "w.db"),
        "SAMPLE_PROCESSED_LOG": str(tmp_path / "processed.jsonl"),
        "WEBHOOK_GUARD_WORKER": "external",
    }
    code = (
        "from sample_apps.flask_app import guard; from webhook_guard.testing import sign_request; "
        "b=b'{\"event\": \"burst\"}'; "
        f"h=sign_request('cloudaipilot', '{SECRET}', b); "
        "print(guard.receive('POST', '/webhook', h, b).status)"
    )
    pytest.importorskip("flask")
    assert (
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        ).stdout.strip()
        == "200"
    )
    result = run("worker", "sample_apps.flask_app:guard", "--burst", env=env)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "processed.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["burst"]


def test_history_shows_the_endpoint_and_utc_times(tmp_path: Path) -> None:
    """The table has an ENDPOINT column and labels its times UTC, the dashboard's clock."""
    import os

    _history_db(tmp_path)
    env = {**os.environ, "TZ": "America/Los_Angeles"}  # a local zone must not change the clock
    result = run("history", "--db", str(tmp_path / "q.db"), env=env)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["TIME", "(UTC)", "ID", "ENDPOINT"]
    assert rows and all(" default " in row for row in rows)
    hours = {time.strftime("%Y-%m-%d %H", time.gmtime(time.time() - lag)) for lag in (0, 3600)}
    assert any(row[:13] in hours for row in rows), (hours, rows)
