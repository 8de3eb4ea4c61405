"""Secrets never leak: a recognisable secret and Authorization token are sent through the Flask
sample under gunicorn and its external worker, then every log, the whole database file, the
CLI's history and every response are searched for them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.contract import HTTPTransport
from tests.servers import (
    BIN,
    ROOT,
    free_port,
    gunicorn_command,
    sample_env,
    serve,
    stop,
    wait_until,
)
from webhook_guard.core.schemes import get_scheme
from webhook_guard.queues.sqlite import SQLiteQueue

pytestmark = pytest.mark.e2e
SECRET = "SeCrEt-CANARY-7f3a9c"
TOKEN = "TOKEN-CANARY-55e1"
COOKIE = "COOKIE-CANARY-0b2d"


def test_no_secret_or_credential_in_logs_history_payloads_or_responses(tmp_path: Path) -> None:
    """Neither the signing secret nor Authorization/Cookie values appear anywhere we write."""
    pytest.importorskip("flask")
    env = sample_env(tmp_path, WEBHOOK_SECRET=SECRET, WEBHOOK_GUARD_WORKER="external")
    port = free_port()
    scheme = get_scheme("cloudaipilot")
    credentials = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"session={COOKIE}"}
    bodies = [b'{"event": "ok"}', b'{"event": "bad", "fail": "always"}']
    responses = []
    with serve(
        [*gunicorn_command("sample_apps.flask_app:app", port), "--log-level", "debug"],
        env,
        port,
        tmp_path / "server.log",
    ):
        transport = HTTPTransport("127.0.0.1", port)
        for body in bodies:
            headers = {**scheme.sign(body, SECRET), **credentials}
            responses.append(transport.request("POST", "/webhook", headers, body))
            responses.append(
                transport.request("POST", "/webhook", headers, body + b" ")
            )  # tampered
        responses.append(transport.request("POST", "/webhook", credentials, bodies[0]))  # unsigned
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [str(BIN / "webhook-guard"), "worker", "sample_apps.flask_app:guard"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    queue = SQLiteQueue(env["WEBHOOK_GUARD_DB"])
    try:
        assert wait_until(
            lambda: queue.counts().get("dead") == 1 and queue.counts().get("processed") == 1
        )
    finally:
        stop(worker)
    cli_output = ""
    for args in (["history", "--json"], ["history", "--failed"]):
        cli_output += subprocess.run(
            [str(BIN / "webhook-guard"), *args, "--db", env["WEBHOOK_GUARD_DB"]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    for record in queue.deliveries():
        cli_output += subprocess.run(
            [
                str(BIN / "webhook-guard"),
                "show",
                record.id,
                "--json",
                "--db",
                env["WEBHOOK_GUARD_DB"],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert [r.status for r in responses] == [200, 401, 200, 401, 400]
    assert "ok" in cli_output and "signature_mismatch" in cli_output  # the scan reads real output
    places = {
        "responses": b"".join(r.body + json.dumps(r.headers).encode() for r in responses),
        "server log": (tmp_path / "server.log").read_bytes(),
        "worker log": (tmp_path / "worker.log").read_bytes(),
        "cli output": cli_output.encode(),
        "database files": b"".join(p.read_bytes() for p in tmp_path.glob("webhook_guard.db*")),
    }
    for place, data in places.items():
        for canary in (SECRET, TOKEN, COOKIE):
            assert canary.encode() not in data, f"{canary} leaked into {place}"
