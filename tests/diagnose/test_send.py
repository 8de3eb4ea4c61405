"""``send`` and webhook_guard.diagnose.client: signed deliveries every preset's Guard accepts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from tests.contract import SECRET, scheme_secret
from tests.diagnose.conftest import Served
from webhook_guard.cli import main
from webhook_guard.core.guard import Guard
from webhook_guard.core.schemes import PRESETS
from webhook_guard.diagnose.client import (
    InvalidURL,
    basic_payload,
    parse_url,
    signed_request,
    tamper,
)
from webhook_guard.queues.sqlite import SQLiteQueue

pytest.importorskip("flask")
from flask import Flask

from webhook_guard.adapters.flask import webhook

PRESET_NAMES = sorted(PRESETS)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def preset_guard(scheme: str, tmp_path: Path) -> Guard:
    return Guard(
        scheme_secret(scheme, SECRET),
        scheme=scheme,
        queue=SQLiteQueue(tmp_path / f"{scheme}.db"),
        worker="external",
    )


@contextmanager
def flask_endpoint(guard: Guard) -> Iterator[str]:
    """A Flask app with ``@webhook(guard)`` at /webhook, served by wsgiref in a thread."""
    app = Flask(__name__)

    @app.route("/webhook")
    @webhook(guard)
    def on_delivery(delivery: Any) -> None:
        """Runs in the worker; nothing to do here."""

    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/webhook"
    finally:
        server.shutdown()
        server.server_close()


# -- against the Flask sample under gunicorn -------------------------------------------------------


@pytest.mark.e2e
def test_send_prints_status_latency_and_body(
    sample_server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """A signed delivery to the sample: 200, the latency and the body, exit 0."""
    code = main(["send", sample_server.url(), "--secret", SECRET, "--event", "invoice.paid"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("200 OK in ") and out[0].endswith(" ms")
    assert json.loads(out[1])["status"] == "ok"


@pytest.mark.e2e
def test_send_with_data_sends_those_exact_bytes(
    sample_server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """--data is sent byte for byte (no re-serialization), and the Guard accepts it."""
    data = '{"event":"order.created",  "n": 1}'
    assert main(["send", sample_server.url(), "--secret", SECRET, "--data", data]) == 0
    assert '"status": "ok"' in capsys.readouterr().out


@pytest.mark.e2e
def test_send_tampered_gets_401_and_exit_1(
    sample_server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tamper changes the body after signing: the sample answers 401 signature_mismatch."""
    code = main(["send", sample_server.url(), "--secret", SECRET, "--tamper"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.startswith("401 ")
    assert '{"error": "signature_mismatch"}' in captured.out
    assert "rejected, as it must be" in captured.err


@pytest.mark.e2e
def test_send_to_a_wrong_path_explains_the_404(
    sample_server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-2xx answer: exit 1 and its meaning on stderr."""
    assert main(["send", sample_server.url("/hooks"), "--secret", SECRET]) == 1
    assert "404: nothing is routed at /hooks" in capsys.readouterr().err


def test_send_to_nothing_listening_names_the_cause(capsys: pytest.CaptureFixture[str]) -> None:
    """Connection refused: exit 1 with the cause in words."""
    from tests.servers import free_port

    assert main(["send", f"http://127.0.0.1:{free_port()}/webhook", "--secret", SECRET]) == 1
    assert "refused: nothing listens on that port" in capsys.readouterr().err


# -- every preset --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", PRESET_NAMES)
def test_each_presets_signature_is_accepted_by_a_flask_guard_of_that_scheme(
    scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send --scheme X` over real HTTP to a Flask endpoint guarded with scheme X: 200."""
    guard = preset_guard(scheme, tmp_path)
    queue = guard.queue
    assert isinstance(queue, SQLiteQueue)
    with flask_endpoint(guard) as url:
        secret = scheme_secret(scheme, SECRET)
        code = main(["send", url, "--secret", secret, "--scheme", scheme, "--event", "x.y"])
        out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out.splitlines()[1])["status"] == "ok"
    assert queue.counts().get("queued") == 1


@pytest.mark.parametrize("scheme", PRESET_NAMES)
def test_dry_run_prints_headers_a_guard_of_that_scheme_accepts(
    scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints the request as JSON; Guard.receive accepts exactly those headers/body."""
    secret = scheme_secret(scheme, SECRET)
    args = ["send", "http://127.0.0.1:9/webhook", "--secret", secret, "--scheme", scheme]
    assert main([*args, "--dry-run", "--id", "evt_dry_1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["method"] == "POST" and shown["url"].endswith("/webhook")
    assert secret not in json.dumps(shown)
    outcome = preset_guard(scheme, tmp_path).receive(
        "POST", "/webhook", shown["headers"], shown["body"].encode()
    )
    assert outcome.status == 200, outcome.body


@pytest.mark.parametrize("scheme", PRESET_NAMES)
def test_tampered_dry_run_is_refused_by_every_preset(
    scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tamper --dry-run: the printed request fails verification under its own scheme."""
    secret = scheme_secret(scheme, SECRET)
    args = ["send", "http://127.0.0.1:9/webhook", "--secret", secret, "--scheme", scheme]
    assert main([*args, "--dry-run", "--tamper"]) == 0
    shown = json.loads(capsys.readouterr().out)
    outcome = preset_guard(scheme, tmp_path).receive(
        "POST", "/webhook", shown["headers"], shown["body"].encode()
    )
    assert json.loads(outcome.body) == {"error": "signature_mismatch"}


# -- the client's pieces -------------------------------------------------------------------------


def test_basic_payload_carries_the_event_where_the_scheme_reads_it() -> None:
    """stripe/standard/slack read 'type', cloudaipilot reads 'event'; slack's id is event_id."""
    assert json.loads(basic_payload("stripe", "a.b"))["type"] == "a.b"
    assert json.loads(basic_payload("cloudaipilot", "a.b"))["event"] == "a.b"
    assert json.loads(basic_payload("slack", "a.b", "Ev1"))["event_id"] == "Ev1"


def test_tamper_changes_the_body_and_keeps_it_json() -> None:
    """A tampered JSON object is still JSON (a receiver parses it), but other bytes."""
    body = b'{"event": "x"}'
    changed = tamper(body)
    assert changed != body and json.loads(changed)["tampered"] is True
    assert tamper(b"{}") == b'{"tampered": true}'
    assert tamper(b"a=1") != b"a=1"


def test_unsigned_request_keeps_the_other_headers() -> None:
    """unsigned=True drops only the signature header: a stripped-signature request."""
    request = signed_request("standard", scheme_secret("standard", SECRET), b"{}", unsigned=True)
    assert "webhook-signature" not in request.headers
    assert "webhook-id" in request.headers and "webhook-timestamp" in request.headers


@pytest.mark.parametrize(
    "url", ["ftp://x.test/webhook", "example.com/webhook", "https:///webhook", "http://x:99999/"]
)
def test_parse_url_refuses_what_a_sender_cannot_use(url: str) -> None:
    """Not http(s), no host, a bad port: InvalidURL (a usage error in the CLI)."""
    with pytest.raises(InvalidURL):
        parse_url(url)


def test_parse_url_keeps_path_and_query() -> None:
    """The request line gets the path and the query; the port defaults by scheme."""
    target = parse_url("https://example.com/hooks/in?source=x")
    assert (target.host, target.port, target.path) == ("example.com", 443, "/hooks/in?source=x")
