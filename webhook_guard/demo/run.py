"""``webhook-guard demo``: the whole promise, end to end, in about fifteen seconds.

Serves the Flask sample under gunicorn on 127.0.0.1 with the embedded SQLite queue, sends it
signed deliveries over real HTTP, waits for the worker, and prints the history.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from webhook_guard.core.schemes import get_scheme
from webhook_guard.history import format_table, history_rows
from webhook_guard.queues.sqlite import SQLiteQueue

APP = "webhook_guard.demo.flask_app:app"
SETTLE_LIMIT_SECONDS = 60.0


def run_demo(directory: str | None = None, port: int = 0) -> int:
    """Serve the Flask sample under gunicorn, send it the demo's deliveries, print the history;
    returns the exit status."""
    if (
        shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None
        and not _has_gunicorn()
    ):
        print(
            "the demo serves the app with gunicorn: pip install 'webhook-guard[demo]'",
            file=sys.stderr,
        )
        return 2
    workdir = Path(directory or tempfile.mkdtemp(prefix="webhook-guard-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "webhook_guard.db"
    secret = "demo-" + secrets.token_hex(8)
    port = port or _free_port()
    env = dict(
        os.environ,
        WEBHOOK_SECRET=secret,
        WEBHOOK_GUARD_DB=str(db),
        WEBHOOK_SCHEME="cloudaipilot",
        SAMPLE_PROCESSED_LOG=str(workdir / "processed.jsonl"),
    )
    env.pop("WEBHOOK_GUARD_WORKER", None)
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 - closed in finally
    print(f"1. serving the Flask sample under gunicorn on http://127.0.0.1:{port}/webhook")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            APP,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not _wait_for_port(port, server):
            print(f"the server did not start; see {workdir / 'server.log'}", file=sys.stderr)
            return 1
        _send_all(f"http://127.0.0.1:{port}/webhook", secret)
        print("\n3. waiting for the worker (retries back off for a few seconds) ...")
        queue = SQLiteQueue(db)
        settled = _wait_settled(queue)
        print(f"\n4. the delivery history (webhook-guard history --db {db}):\n")
        print(format_table(history_rows(queue, limit=20)))
        if not settled:
            print(
                "\nsome deliveries were still in progress when the demo stopped waiting",
                file=sys.stderr,
            )
            return 1
        print(
            "\nEvery accepted delivery was stored before its 200; the handler ran in the worker, "
            "retried with backoff, and the one that always fails is dead-lettered, ready for\n"
            f"  webhook-guard show <id> --db {db}\n  webhook-guard replay --dead --db {db}"
        )
        return 0
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _send_all(url: str, secret: str) -> None:
    scheme = get_scheme("cloudaipilot")
    print("\n2. sending deliveries signed with X-CloudAIPilot-Signature:")
    valid = json.dumps({"event": "invoice.paid", "invoice": "in_1"}).encode()
    valid_headers = scheme.sign(valid, secret, event="invoice.paid")
    sends = [
        ("valid", valid, valid_headers),
        ("tampered (body changed after signing)", valid.replace(b"in_1", b"in_9"), valid_headers),
        ("duplicate (the same delivery again)", valid, valid_headers),
    ]
    for label, payload in (
        ("fails twice, then succeeds", {"event": "order.created", "fail": 2}),
        ("always fails", {"event": "order.refunded", "fail": "always"}),
    ):
        body = json.dumps(payload).encode()
        sends.append((label, body, scheme.sign(body, secret, event=str(payload["event"]))))
    for label, body, headers in sends:
        status, answer = _post(url, body, headers)
        print(f"   {label:40} -> {status} {answer}")


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _wait_settled(queue: SQLiteQueue) -> bool:
    deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
    while time.monotonic() < deadline:
        counts = queue.counts()
        if not any(counts.get(s) for s in ("queued", "processing", "retrying")):
            return True
        time.sleep(0.2)
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, server: subprocess.Popen[bytes], limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def _has_gunicorn() -> bool:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True
