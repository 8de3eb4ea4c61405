"""``webhook-guard worker`` as a real subprocess: several Guards, one store, dispatch by endpoint,
and ``replay`` telling truthfully whether a worker will run what it queued again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.contract import SECRET
from tests.servers import BIN
from webhook_guard.core.guard import Guard
from webhook_guard.testing import sign_request

CLI = str(BIN / "webhook-guard")

APP = """
import json, os
from webhook_guard import Guard

LOG = os.environ["HANDLED_LOG"]
orders = Guard("{secret}", endpoint="orders", queue="q.db", worker="external")
github = Guard("{secret}", endpoint="github", queue="q.db", worker="external")


def record(name):
    def handle(delivery):
        with open(LOG, "a") as log:
            log.write(json.dumps([name, delivery.id]) + "\\n")
    return handle


orders.add_handler(record("orders"))
github.add_handler(record("github"))
"""


def project(tmp_path: Path) -> tuple[dict[str, str], Guard, Guard]:
    """A module with two Guards on one store in ``tmp_path``, and twins in this process to send
    deliveries to the same file (another process, as a web server would be)."""
    (tmp_path / "hooks.py").write_text(textwrap.dedent(APP.format(secret=SECRET)))
    env = {**os.environ, "HANDLED_LOG": str(tmp_path / "handled.jsonl")}
    env.pop("PYTHONPATH", None)
    db = str(tmp_path / "q.db")
    # External: this process only receives, as a web server with a separate worker would.
    twins = [Guard(SECRET, endpoint=e, queue=db, worker="external") for e in ("orders", "github")]
    return env, twins[0], twins[1]


def deliver(guard: Guard, payload: dict[str, object]) -> str:
    """Send ``payload`` to ``guard``; return the delivery id."""
    body = json.dumps(payload).encode()
    outcome = guard.receive("POST", "/", sign_request("cloudaipilot", SECRET, body), body)
    assert outcome.status == 200
    return str(json.loads(outcome.body)["id"])


def handled(tmp_path: Path) -> list[tuple[str, str]]:
    """(handler, delivery id) pairs the worker subprocess recorded."""
    log = tmp_path / "handled.jsonl"
    if not log.exists():
        return []
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def test_a_module_target_serves_every_guard_in_it_each_with_its_own_handlers(
    tmp_path: Path,
) -> None:
    """`worker hooks` finds both Guards and runs each delivery with its own endpoint's handler."""
    env, orders, github = project(tmp_path)
    first, second = deliver(orders, {"n": 1}), deliver(github, {"n": 2})
    result = subprocess.run(
        [CLI, "worker", "hooks", "--burst"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(handled(tmp_path)) == sorted([("orders", first), ("github", second)])


def test_a_worker_for_one_guard_leaves_the_other_endpoint_queued(tmp_path: Path) -> None:
    """`worker hooks:orders` never claims github's delivery: it stays queued for its worker."""
    env, orders, github = project(tmp_path)
    first, second = deliver(orders, {"n": 1}), deliver(github, {"n": 2})
    result = subprocess.run(
        [CLI, "worker", "hooks:orders", "--burst"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert handled(tmp_path) == [("orders", first)]
    assert github.queue.get(second).status == "queued"  # type: ignore[attr-defined]


def test_replay_says_whether_a_worker_will_run_the_deliveries(tmp_path: Path) -> None:
    """No worker seen: replay says nothing will run them; with one running, it names it; the
    running worker then runs them and stops cleanly on SIGTERM."""
    env, orders, _ = project(tmp_path)
    delivery = deliver(orders, {"n": 1})
    orders.queue.mark_replayed([delivery])  # type: ignore[attr-defined]
    db = ["--db", str(tmp_path / "q.db")]
    quiet = subprocess.run(
        [CLI, "replay", *db, delivery], env=env, capture_output=True, text=True, timeout=60
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "no worker has been seen" in quiet.stderr
    worker = subprocess.Popen(
        [CLI, "worker", "hooks"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not handled(tmp_path):
            assert time.monotonic() < deadline, "the running worker never ran the delivery"
            time.sleep(0.1)
        again = subprocess.run(
            [CLI, "replay", *db, delivery], env=env, capture_output=True, text=True, timeout=60
        )
        assert "workers seen" in again.stderr and "orders: pid" in again.stderr, again.stderr
        while len(handled(tmp_path)) < 2:
            assert time.monotonic() < deadline, "the replay was not run"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors
    assert "stopped" in errors


HANGING = """
import os, threading
from webhook_guard import Guard

hooks = Guard("{secret}", endpoint="hooks", queue="q.db", worker="external")


@hooks.on()
def hang(delivery):
    open(os.environ["HANDLED_LOG"], "a").write("started\\n")
    threading.Event().wait()  # never returns
"""


def test_a_second_sigterm_stops_a_worker_stuck_in_a_handler_at_once(tmp_path: Path) -> None:
    """SIGTERM waits for the delivery in hand; a second SIGTERM ends the worker at once with a
    non-zero status (the lease then gives the delivery back)."""
    (tmp_path / "stuck.py").write_text(textwrap.dedent(HANGING.format(secret=SECRET)))
    env = {**os.environ, "HANDLED_LOG": str(tmp_path / "handled.log")}
    guard = Guard(SECRET, endpoint="hooks", queue=str(tmp_path / "q.db"), worker="external")
    deliver(guard, {"n": 1})
    worker = subprocess.Popen(
        [CLI, "worker", "stuck"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "handled.log").exists():
            assert time.monotonic() < deadline, "the handler never started"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert worker.poll() is None, "the first SIGTERM waits for the handler in hand"
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 128 + signal.SIGTERM and "stopped at once" in errors


def test_the_worker_logs_one_info_line_per_finished_delivery(tmp_path: Path) -> None:
    """--log-level info (the default) logs each finished delivery; --log-level warning does not."""
    env, orders, _ = project(tmp_path)
    first = deliver(orders, {"n": 1})
    chatty = subprocess.run(
        [CLI, "worker", "hooks", "--burst"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"delivery {first} orders - processed in" in chatty.stderr, chatty.stderr
    second = deliver(orders, {"n": 2})
    quiet = subprocess.run(
        [CLI, "worker", "hooks", "--burst", "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quiet.returncode == 0 and second not in quiet.stderr


def test_a_consumer_thread_that_ends_unasked_makes_the_worker_exit_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real consumer loop ends only when asked (every exception in it is retried), so the
    unexpected end is simulated by a stand-in for ``Worker.run`` that returns at once: the
    worker exits 1, which a supervisor set to restart on failure acts on, and says why."""
    from webhook_guard.cli import run_workers
    from webhook_guard.core.consumer import Worker

    monkeypatch.setattr(Worker, "run", lambda self, stop: None)
    guard = Guard(SECRET, endpoint="hooks", queue=str(tmp_path / "q.db"), worker="external")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert run_workers([guard]) == 1
    finally:  # run_workers installs its own; pytest's must come back
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert "a consumer thread stopped unexpectedly" in capsys.readouterr().err
