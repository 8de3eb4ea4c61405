"""Forged and captured requests against real servers (the Flask sample under gunicorn, the
Starlette sample under uvicorn), with the default ``cloudaipilot`` preset, which signs the body
only: whatever an attacker does to the unsigned headers of a captured request, it is a
duplicate of the first delivery and runs once, as the event its signed body names; the stored
delivery holds no signature to capture from the history."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.contract import HTTPTransport
from tests.servers import (
    BIN,
    free_port,
    gunicorn_command,
    processed,
    sample_env,
    serve,
    uvicorn_command,
    wait_until,
)
from webhook_guard.testing import sign_request

pytestmark = pytest.mark.e2e
SECRET = "contract-secret"

SERVERS = {
    "flask-gunicorn": lambda port: gunicorn_command("sample_apps.flask_app:app", port, workers=2),
    "starlette-uvicorn": lambda port: uvicorn_command("sample_apps.starlette_app:app", port),
}


def send(port: int, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
    reply = HTTPTransport("127.0.0.1", port, timeout=10).request("POST", "/webhook", headers, body)
    return reply.status, reply.json()


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_captured_request_with_forged_headers_runs_once_as_its_signed_event(
    tmp_path: Path, server: str
) -> None:
    port = free_port()
    env = sample_env(tmp_path)
    body = json.dumps({"event": "invoice.paid", "id": "evt_1"}).encode()
    signed = sign_request("cloudaipilot", SECRET, body)
    signed["X-CloudAIPilot-Delivery"] = "d-1"
    signed["X-CloudAIPilot-Event"] = "invoice.paid"
    without_id = {k: v for k, v in signed.items() if k != "X-CloudAIPilot-Delivery"}
    forged = [
        {**signed, "X-CloudAIPilot-Delivery": "d-2"},  # a new delivery id
        without_id,  # no delivery id at all
        {**signed, "X-CloudAIPilot-Event": "account.deleted"},  # another event
        {**without_id, "X-CloudAIPilot-Event": "account.deleted", "X-CloudAIPilot-Delivery": "x"},
    ]
    with serve(SERVERS[server](port), env, port, tmp_path / "server.log"):
        status, first = send(port, signed, body)
        replays = [send(port, headers, body) for headers in forged]
        assert wait_until(lambda: len(processed(tmp_path)) >= 1, limit=30)
        # A fresh signed body under a forged event header runs as its body's event.
        other = json.dumps({"event": "order.created", "id": "evt_2"}).encode()
        headers = {**sign_request("cloudaipilot", SECRET, other), "X-CloudAIPilot-Event": "x.y"}
        status_other, second = send(port, headers, other)
        assert wait_until(lambda: len(processed(tmp_path)) >= 2, limit=30)
        shown = subprocess.run(
            [str(BIN / "webhook-guard"), "show", first["id"], "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert (status, first["status"]) == (200, "ok")
    assert replays == [(200, {"status": "duplicate", "id": first["id"]})] * len(forged)
    assert status_other == 200 and second["status"] == "ok"
    runs = processed(tmp_path)
    assert sorted((run["id"], run["event"]) for run in runs) == sorted(
        [(first["id"], "invoice.paid"), (second["id"], "order.created")]
    )
    assert signed["X-CloudAIPilot-Signature"] not in shown
    assert "signature" not in shown.lower()
    assert "d-1" in shown  # the sender's own id is kept, for display
