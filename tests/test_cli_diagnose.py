"""``webhook-guard send | check | verify`` as real subprocesses, and their --help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import SECRET
from tests.servers import BIN, ROOT, free_port, gunicorn_command, sample_env, serve
from webhook_guard.testing import sign_request

CLI = str(BIN / "webhook-guard")
APP = "sample_apps.flask_app:app"


def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed command; without ``env``, $WEBHOOK_SECRET is left out of it."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "WEBHOOK_SECRET"}
    return subprocess.run(
        [CLI, *args],
        cwd=ROOT,
        env=env,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def sample_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Flask sample under real gunicorn."""
    pytest.importorskip("gunicorn")
    directory = tmp_path_factory.mktemp("cli-sample")
    port = free_port()
    with serve(gunicorn_command(APP, port), sample_env(directory), port, directory / "log"):
        yield f"http://127.0.0.1:{port}/webhook"


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["send", "check", "verify"])
def test_help_explains_the_command_with_examples(command: str) -> None:
    """Each command's --help exits 0 and shows runnable examples and the exit codes."""
    result = run(command, "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert f"webhook-guard {command} " in result.stdout
    assert "Exit 0" in result.stdout
    assert "--timeout" not in result.stdout or command == "send"  # check's is test-only


def test_top_level_help_lists_the_new_commands() -> None:
    """`webhook-guard --help` names send, check and verify."""
    out = run("--help").stdout
    for command in ("send", "check", "verify"):
        assert command in out


# -- send ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_send_subprocess_gets_200_and_prints_the_body(sample_url: str) -> None:
    """The installed command sends a signed delivery: 200, latency, body, exit 0."""
    result = run("send", sample_url, "--secret", SECRET)
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.splitlines()[:2]
    assert status.startswith("200 OK in ")
    assert json.loads(body)["status"] == "ok"
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.e2e
def test_send_subprocess_tampered_gets_401_and_exit_1(sample_url: str) -> None:
    """--tamper: 401 signature_mismatch, exit 1."""
    result = run("send", sample_url, "--secret", SECRET, "--tamper")
    assert result.returncode == 1
    assert result.stdout.startswith("401 ")
    assert "signature_mismatch" in result.stdout


@pytest.mark.e2e
def test_send_takes_the_secret_from_the_environment(sample_url: str, tmp_path: Path) -> None:
    """Without --secret, the first of $WEBHOOK_SECRET signs (so it stays out of argv)."""
    env = dict(os.environ, WEBHOOK_SECRET=f"{SECRET},other")
    body = tmp_path / "event.json"
    body.write_bytes(b'{"event": "from.file"}')
    result = run("send", sample_url, "--file", str(body), env=env)
    assert result.returncode == 0, result.stderr


def test_send_usage_errors_exit_2() -> None:
    """A bad URL, no secret, or --data with --file: exit 2."""
    assert run("send", "example.com/webhook", "--secret", "s").returncode == 2
    assert run("send", "https://example.com/webhook").returncode == 2
    both = run("send", "https://e.test/w", "--secret", "s", "--data", "{}", "--file", "x")
    assert both.returncode == 2


# -- check ---------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_check_subprocess_happy_path_exits_0(sample_url: str) -> None:
    """The installed command runs the checklist against the sample: nothing fails, exit 0."""
    result = run("check", sample_url, "--secret", SECRET, "--allow-http")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "WARN", "PASS", "WARN", "PASS", "PASS", "PASS", "PASS"
    ]  # fmt: skip
    assert "5 pass, 2 warn" in result.stderr


@pytest.mark.e2e
def test_check_subprocess_json_is_one_object_per_line_on_stdout(sample_url: str) -> None:
    """--json: one JSON object per check on stdout, the summary on stderr only."""
    result = run("check", sample_url, "--secret", SECRET, "--json")
    assert result.returncode == 1  # plain http without --allow-http
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["check"] for r in rows] == [
        "https", "resolves", "address", "connects", "signed", "tampered", "unsigned"
    ]  # fmt: skip
    assert rows[0]["status"] == "fail" and "senders require https" in rows[0]["detail"]
    assert "fail" in result.stderr


@pytest.mark.e2e
def test_check_subprocess_over_trusted_https_passes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Over https with a certificate the client trusts (SSL_CERT_FILE), https and TLS pass."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("cli-https")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    port = free_port()
    command = [*gunicorn_command(APP, port), "--certfile", str(cert), "--keyfile", str(key)]
    with serve(command, sample_env(directory), port, directory / "log"):
        env = dict(os.environ, SSL_CERT_FILE=str(cert))
        result = run("check", f"https://127.0.0.1:{port}/webhook", "--secret", SECRET, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS  https" in result.stdout
    assert "certificate valid for 127.0.0.1" in result.stdout


def test_check_usage_errors_exit_2() -> None:
    """Not a URL, or a secret the scheme cannot use: exit 2."""
    assert run("check", "not a url", "--secret", "s").returncode == 2
    bad = run("check", "https://e.test/w", "--secret", "not base64!", "--scheme", "standard")
    assert bad.returncode == 2


# -- verify --------------------------------------------------------------------------------------


def test_verify_subprocess_matching_signature_exits_0(tmp_path: Path) -> None:
    """A correctly signed captured request: 'matches', exit 0."""
    body = b'{"event": "invoice.paid"}'
    (tmp_path / "body.json").write_bytes(body)
    signature = sign_request("cloudaipilot", SECRET, body)["X-CloudAIPilot-Signature"]
    result = run(
        "verify",
        "--secret",
        SECRET,
        "--body-file",
        str(tmp_path / "body.json"),
        "--header",
        f"X-CloudAIPilot-Signature: {signature}",
    )
    assert result.returncode == 0, result.stderr
    assert "the signature matches" in result.stdout


def test_verify_subprocess_names_the_mistake_and_exits_1(tmp_path: Path) -> None:
    """A sender that signed compact JSON: one sentence with the fix, exit 1, no secret shown."""
    raw = b'{"event": "invoice.paid", "amount": 1}'
    signed_bytes = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    signature = sign_request("cloudaipilot", SECRET, signed_bytes)["X-CloudAIPilot-Signature"]
    headers = tmp_path / "headers.txt"
    headers.write_text(
        f"POST /webhook HTTP/1.1\nContent-Type: application/json\n"
        f"X-CloudAIPilot-Signature: {signature}\n"
    )
    result = run(
        "verify", "--body-file", "-", "--headers-file", str(headers),
        env=dict(os.environ, WEBHOOK_SECRET=SECRET), stdin=raw,
    )  # fmt: skip
    assert result.returncode == 1
    assert "re-serialized JSON (compact separators=(',', ':'))" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_verify_subprocess_json_verdict(tmp_path: Path) -> None:
    """--json: one object with matches, scheme and the findings' codes and sentences."""
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    result = run(
        "verify", "--secret", SECRET, "--body-file", str(body), "--json",
        "--header", "Content-Type: application/json",
    )  # fmt: skip
    verdict = json.loads(result.stdout)
    assert result.returncode == 1
    assert verdict["matches"] is False
    assert [f["code"] for f in verdict["findings"]] == ["no_signature_headers"]


def test_verify_usage_errors_exit_2(tmp_path: Path) -> None:
    """No headers, a header without a colon, or an unreadable body file: exit 2."""
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    assert run("verify", "--secret", "s", "--body-file", str(body)).returncode == 2
    no_colon = run("verify", "--secret", "s", "--body-file", str(body), "--header", "nocolon")
    assert no_colon.returncode == 2
    missing = run(
        "verify", "--secret", "s", "--body-file", str(tmp_path / "nope"), "--header", "A: b"
    )
    assert missing.returncode == 2
