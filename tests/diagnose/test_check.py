"""webhook_guard.diagnose.check: the checklist against real servers built to fail each way."""

from __future__ import annotations

import json

import pytest

from tests.contract import SECRET
from tests.diagnose.conftest import Served
from tests.servers import free_port
from webhook_guard.cli import main
from webhook_guard.diagnose.check import (
    CheckResult,
    explain,
    explain_failure,
    run_checks,
    why_unreachable,
)
from webhook_guard.diagnose.client import Reply, RequestFailed

pytestmark = pytest.mark.e2e


def by_name(rows: list[CheckResult]) -> dict[str, CheckResult]:
    return {row.check: row for row in rows}


def reply(status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, "", headers, body, 0.01)


# -- against real servers ------------------------------------------------------------------------


def test_happy_path_against_the_flask_sample_passes_every_check(
    sample_server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Flask sample under gunicorn: every check passes (http and loopback only warn), exit 0."""
    code = main(["check", sample_server.url(), "--secret", SECRET, "--allow-http", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    statuses = {row["check"]: row["status"] for row in rows}
    assert statuses == {
        "https": "warn",
        "resolves": "pass",
        "address": "warn",
        "connects": "pass",
        "signed": "pass",
        "tampered": "pass",
        "unsigned": "pass",
    }
    signed = next(row for row in rows if row["check"] == "signed")
    assert "of the 10 s budget" in signed["detail"] and signed["latency"] > 0


def test_plain_http_fails_without_allow_http(sample_server: Served) -> None:
    """http:// is a failure worded 'senders require https' unless --allow-http downgrades it."""
    strict = by_name(run_checks(sample_server.url(), SECRET))["https"]
    assert strict.status == "fail"
    assert "senders require https" in strict.line()
    allowed = by_name(run_checks(sample_server.url(), SECRET, allow_http=True))["https"]
    assert allowed.status == "warn" and "senders require https" in allowed.line()


def test_plain_http_makes_the_cli_exit_1(
    sample_server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --allow-http the otherwise healthy sample fails the checklist: exit 1."""
    assert main(["check", sample_server.url(), "--secret", SECRET]) == 1
    assert "FAIL  https" in capsys.readouterr().out


def test_loopback_address_is_a_warning_line(sample_server: Served) -> None:
    """127.0.0.1 gets a clearly worded warning, not a failure."""
    row = by_name(run_checks(sample_server.url(), SECRET, allow_http=True))["address"]
    assert row.status == "warn"
    assert "127.0.0.1 is a loopback address" in row.detail
    assert "a sender on the internet cannot reach it" in row.detail


def test_auth_layer_in_front_answers_401_without_our_error_code(failing_server: Served) -> None:
    """Basic auth over the webhook path: 401 with an HTML body is named an auth layer in front."""
    rows = by_name(run_checks(failing_server.url("/auth/webhook"), SECRET, allow_http=True))
    signed = rows["signed"]
    assert signed.status == "fail"
    assert "401" in signed.detail
    assert "an auth layer in front of the webhook path rejected the sender" in signed.detail
    assert "exempt the path" in signed.fix
    assert rows["tampered"].status == rows["unsigned"].status == "skip"


def test_csrf_layer_in_front_answers_403_without_our_error_code(failing_server: Served) -> None:
    """A CSRF check over the webhook path: 403 is named an auth layer in front, not the secret."""
    signed = by_name(run_checks(failing_server.url("/csrf/webhook"), SECRET, allow_http=True))[
        "signed"
    ]
    assert signed.status == "fail"
    assert "403" in signed.detail
    assert "an auth layer in front of the webhook path rejected the sender" in signed.detail
    assert "secret" not in signed.detail


def test_our_signature_mismatch_means_the_secret_differs(sample_server: Served) -> None:
    """A 401 with our signature_mismatch body: the secret differs between sender and receiver."""
    signed = by_name(run_checks(sample_server.url(), "not-the-secret", allow_http=True))["signed"]
    assert signed.status == "fail"
    assert "signature_mismatch" in signed.detail
    assert "the secret differs between sender and receiver" in signed.detail
    assert "auth layer" not in signed.detail


def test_wrong_scheme_is_named_by_the_missing_signature_answer(sample_server: Served) -> None:
    """Signing the github way for a cloudaipilot receiver: 400 missing_signature, use --scheme."""
    signed = by_name(run_checks(sample_server.url(), SECRET, "github", allow_http=True))["signed"]
    assert signed.status == "fail"
    assert "missing_signature" in signed.detail and "--scheme" in signed.fix


def test_wrong_path_is_a_404(sample_server: Served) -> None:
    """A path the app does not route (the Flask sample's own 404) is named as the wrong path."""
    signed = by_name(run_checks(sample_server.url("/webhooks"), SECRET, allow_http=True))["signed"]
    assert signed.status == "fail"
    assert "404: nothing is routed at /webhooks" in signed.detail
    assert "check the path" in signed.fix


def test_wrong_method_is_a_405(failing_server: Served) -> None:
    """A route that allows GET only: 405, and senders always POST."""
    signed = by_name(run_checks(failing_server.url("/get-only/webhook"), SECRET, allow_http=True))[
        "signed"
    ]
    assert signed.status == "fail"
    assert "405: the route at /get-only/webhook does not accept POST" in signed.detail
    assert "allow POST" in signed.fix


def test_handler_raising_inline_is_a_500(failing_server: Served) -> None:
    """A handler that processes inline and raises: 500, answer 200 first."""
    signed = by_name(run_checks(failing_server.url("/raises/webhook"), SECRET, allow_http=True))[
        "signed"
    ]
    assert signed.status == "fail"
    assert "the endpoint raised while processing inline" in signed.detail
    assert signed.fix.startswith("answer 200 first")


def test_slow_endpoint_times_out_against_the_budget(failing_server: Served) -> None:
    """An endpoint that processes 3 s before answering, against a 1 s budget: a timeout."""
    rows = by_name(
        run_checks(failing_server.url("/slow/webhook"), SECRET, allow_http=True, budget=1.0)
    )
    signed = rows["signed"]
    assert signed.status == "fail"
    assert "the endpoint took longer than 1 s: it processes before answering" in signed.detail
    assert signed.fix == "answer 200 first and process in a worker"
    assert rows["tampered"].status == "skip"


def test_hidden_timeout_flag_shortens_the_budget(
    failing_server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """--timeout (hidden, for tests) sets the budget the CLI holds the endpoint to."""
    url = failing_server.url("/slow/webhook")
    code = main(["check", url, "--secret", SECRET, "--allow-http", "--timeout", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  signed" in out and "took longer than 1 s" in out


def test_endpoint_that_accepts_anything_has_verification_off(failing_server: Served) -> None:
    """A tampered and an unsigned request answered 200: 'signature verification is off'."""
    rows = by_name(run_checks(failing_server.url("/no-verify/webhook"), SECRET, allow_http=True))
    assert rows["signed"].status == "pass"
    for name in ("tampered", "unsigned"):
        assert rows[name].status == "fail"
        assert "signature verification is off" in rows[name].detail


def test_nothing_listening_is_a_connection_failure_in_words() -> None:
    """A port nobody listens on: 'refused', and the later checks are skipped."""
    rows = by_name(run_checks(f"http://127.0.0.1:{free_port()}/webhook", SECRET, allow_http=True))
    assert rows["connects"].status == "fail"
    assert "refused: nothing listens on that port" in rows["connects"].detail
    assert {rows[n].status for n in ("signed", "tampered", "unsigned")} == {"skip"}


def test_a_host_that_does_not_resolve_fails_the_resolve_check() -> None:
    """A name under .invalid never resolves: the line says so and the rest is skipped."""
    rows = by_name(run_checks("https://webhooks.example.invalid/webhook", SECRET))
    assert rows["https"].status == "pass"
    assert rows["resolves"].status == "fail"
    assert "does not resolve" in rows["resolves"].detail
    assert rows["signed"].status == "skip"


def test_untrusted_certificate_fails_the_connection_in_words(https_sample_server: Served) -> None:
    """A self-signed certificate: senders refuse it, and so does the check."""
    rows = by_name(run_checks(https_sample_server.url(), SECRET))
    assert rows["https"].status == "pass"
    assert rows["connects"].status == "fail"
    assert "TLS certificate of 127.0.0.1 is not trusted" in rows["connects"].detail
    assert "senders refuse it too" in rows["connects"].detail


def test_no_output_of_check_contains_the_secret(
    sample_server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither the table nor the JSON lines show the secret, failing or passing."""
    for secret in (SECRET, "wrong-secret-XYZ"):
        main(["check", sample_server.url(), "--secret", secret, "--allow-http"])
        main(["check", sample_server.url(), "--secret", secret, "--allow-http", "--json"])
        captured = capsys.readouterr()
        assert secret not in captured.out + captured.err


# -- meanings, without a server ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.10", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.10.1", "a link-local address"),
        ("100.64.0.1", "not a public address"),
        ("93.184.216.34", ""),
        ("2606:4700::1111", ""),
    ],
)
def test_why_unreachable_names_private_and_loopback_addresses(address: str, kind: str) -> None:
    """Loopback, private, link-local and carrier-grade NAT addresses are named; public ones not."""
    assert why_unreachable(address) == kind


def test_timeout_meaning_uses_the_guides_wording() -> None:
    """The default budget's timeout reads exactly as the guide words it."""
    meaning = explain_failure(RequestFailed("", stage="response", timed_out=True), 10.0)
    assert f"{meaning.cause}; {meaning.fix}" == (
        "the endpoint took longer than 10 s: it processes before answering; "
        "answer 200 first and process in a worker"
    )


def test_redirect_is_named_with_its_location() -> None:
    """A 3xx: senders do not follow redirects; the Location is shown."""
    meaning = explain(reply(301, headers=(("Location", "https://x.test/webhook/"),)), path="/w")
    assert "redirects (301 to https://x.test/webhook/)" in meaning.cause
    assert "final URL" in meaning.fix


def test_our_queue_unavailable_and_a_proxys_503_differ() -> None:
    """503 queue_unavailable is the receiver's store; a bare 503 is the app or a proxy."""
    ours = explain(reply(503, b'{"error": "queue_unavailable"}'), path="/w")
    theirs = explain(reply(503, b"<h1>Service Unavailable</h1>"), path="/w")
    assert "could not store the delivery" in ours.cause
    assert "unavailable" in theirs.cause and "store" not in theirs.cause


def test_a_json_401_that_is_not_our_contract_is_an_auth_layer() -> None:
    """{"detail": "Not authenticated"} (FastAPI's auth) is not a webhook_guard answer."""
    meaning = explain(reply(401, b'{"detail": "Not authenticated"}'), path="/w")
    assert "auth layer in front of the webhook path" in meaning.cause


def test_bad_gateway_and_proxy_413_are_named() -> None:
    """502/504 from a proxy with no app behind it; 413 from a proxy's body limit."""
    assert "got no answer from the app" in explain(reply(502), path="/w").cause
    assert "proxy in front refused the body size" in explain(reply(413), path="/w").cause
    ours = explain(reply(413, b'{"error": "payload_too_large"}'), path="/w")
    assert "size cap" in ours.cause


def test_a_receiver_that_verifies_over_reserialized_json_fails_the_signed_check(
    failing_server: Served,
) -> None:
    """check's body (compact separators, raw UTF-8, 10.50) does not survive json.loads/dumps, so
    a receiver that verifies over the re-serialized JSON fails the signed check."""
    import subprocess

    from tests.servers import BIN

    result = subprocess.run(
        [
            *(str(BIN / "webhook-guard"), "check", failing_server.url("/reserializes/webhook")),
            *("--secret", SECRET, "--allow-http", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = {row["check"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert result.returncode == 1, result.stderr
    assert rows["signed"]["status"] == "fail"


def test_the_cli_prints_each_result_as_its_check_finishes(failing_server: Served) -> None:
    """Against an endpoint that takes seconds to answer, the first results are on stdout while
    `check` is still waiting for the signed delivery's answer (no silent wait)."""
    import subprocess

    from tests.servers import BIN

    process = subprocess.Popen(
        [
            *(str(BIN / "webhook-guard"), "check", failing_server.url("/slow/webhook")),
            *("--secret", SECRET, "--allow-http"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        while not any("connects" in line for line in seen):
            line = process.stdout.readline()
            assert line, "check ended before printing the connection check"
            seen.append(line)
        assert process.poll() is None, "the early results came only at the end"
    finally:
        process.kill()
        process.communicate()
