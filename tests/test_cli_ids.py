"""`show` and `replay` at scale, as real subprocesses: rejected rows, id prefixes with "not
found" and "ambiguous" named, replay filtered by endpoint and time, dry runs, progress."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.contract import SECRET, contract_guard
from tests.servers import BIN
from webhook_guard.core.guard import Guard
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.testing import sign_request
from webhook_guard.worker import Worker

CLI = str(BIN / "webhook-guard")
DOOMED = RetryPolicy(max_attempts=1)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)


def dead_deliveries(tmp_path: Path, endpoint: str, count: int) -> tuple[Guard, list[str]]:
    """``count`` deliveries of ``endpoint`` that die at their first attempt."""
    guard = contract_guard("cloudaipilot", str(tmp_path / "q.db"), endpoint=endpoint, retry=DOOMED)
    guard.add_handler(lambda delivery: 1 / 0)
    ids = []
    for n in range(count):
        body = json.dumps({"event": "x", "endpoint": endpoint, "n": n}).encode()
        outcome = guard.receive("POST", "/", sign_request("cloudaipilot", SECRET, body), body)
        ids.append(json.loads(outcome.body)["id"])
    Worker(guard).drain(timeout=30)
    return guard, ids


def test_show_opens_a_rejected_row(tmp_path: Path) -> None:
    """`show r1` prints the rejection history lists as r1: its reason, hint and path."""
    guard = contract_guard("cloudaipilot", str(tmp_path / "q.db"))
    guard.receive("POST", "/hooks", {}, b"{}")
    shown = cli("show", "--db", str(tmp_path / "q.db"), "r1")
    assert shown.returncode == 0, shown.stderr
    assert "missing_signature" in shown.stdout and "/hooks" in shown.stdout
    missing = cli("show", "--db", str(tmp_path / "q.db"), "r99")
    assert missing.returncode == 1 and "no rejected request r99" in missing.stderr


def test_an_id_prefix_that_matches_nothing_or_several_is_named(tmp_path: Path) -> None:
    """A unique prefix works; none is 'no delivery' (exit 1); several is 'ambiguous' (exit 2)."""
    _, ids = dead_deliveries(tmp_path, "default", 20)
    db = ["--db", str(tmp_path / "q.db")]
    assert cli("show", *db, ids[0][:10]).returncode == 0
    nothing = cli("show", *db, "zzzz")
    assert nothing.returncode == 1 and "no delivery 'zzzz'" in nothing.stderr
    first_chars = {i[0] for i in ids}
    shared = next(c for c in first_chars if sum(i.startswith(c) for i in ids) > 1)
    several = cli("show", *db, shared)
    assert several.returncode == 2 and "ambiguous" in several.stderr


def test_replay_by_prefix_names_what_it_did_not_find(tmp_path: Path) -> None:
    """Ids by prefix are replayed; unknown ones are listed as not found (exit 1)."""
    guard, ids = dead_deliveries(tmp_path, "default", 2)
    result = cli("replay", "--db", str(tmp_path / "q.db"), ids[0][:12], "nosuchid")
    assert result.returncode == 1
    assert "not found: nosuchid" in result.stderr and "queued 1 delivery" in result.stderr
    assert guard.queue.get(ids[0]).status == "queued"  # type: ignore[attr-defined]
    assert guard.queue.get(ids[1]).status == "dead"  # type: ignore[attr-defined]


def test_replay_filters_by_endpoint_dry_runs_and_shows_progress(tmp_path: Path) -> None:
    """--dead --endpoint orders --dry-run lists only orders' dead deliveries and changes
    nothing; the real run replays them with progress lines on a non-terminal stderr."""
    orders, order_ids = dead_deliveries(tmp_path, "orders", 450)
    github, github_ids = dead_deliveries(tmp_path, "github", 3)
    db = ["--db", str(tmp_path / "q.db")]
    dry = cli("replay", *db, "--dead", "--endpoint", "orders", "--since", "1h", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sorted(dry.stdout.split()) == sorted(order_ids)
    assert "would replay 450" in dry.stderr
    assert orders.queue.counts() == {"dead": 453}  # type: ignore[attr-defined]
    real = cli("replay", *db, "--dead", "--endpoint", "orders")
    assert real.returncode == 0, real.stderr
    assert "replayed 200/450" in real.stderr and "replayed 450/450" in real.stderr
    assert orders.queue.counts() == {"queued": 450, "dead": 3}  # type: ignore[attr-defined]
    assert {github.queue.get(i).status for i in github_ids} == {"dead"}  # type: ignore[attr-defined]


def test_history_pages_with_a_cursor_and_says_when_more_rows_exist(tmp_path: Path) -> None:
    """--limit 5 over 12 deliveries: three pages through --before, each row once, and a "more
    rows" note on every page but the last."""
    _, ids = dead_deliveries(tmp_path, "default", 12)
    db = ["--db", str(tmp_path / "q.db")]
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(3):
        page = cli("history", *db, "--limit", "5", "--json", *cursor)
        assert page.returncode == 0, page.stderr
        seen += [json.loads(line)["id"] for line in page.stdout.splitlines()]
        if "more rows" in page.stderr:
            cursor = ["--before", page.stderr.split("--before ")[1].split()[0]]
        else:
            cursor = []
            break
    assert not cursor and sorted(seen) == sorted(ids)
