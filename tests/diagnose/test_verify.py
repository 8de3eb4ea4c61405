"""webhook_guard.diagnose.verify: each sender mistake, made the way a buggy sender makes it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_guard.cli import main
from webhook_guard.diagnose.verify import Finding, diagnose, signature_matches
from webhook_guard.testing import sign_request

SECRET = "diag-secret-Qx7v"
# Standard Webhooks and Stripe both hand out whsec_ secrets, but use them differently.
WHSEC = "whsec_" + base64.b64encode(b"standard-key-for-diagnose").decode()
NOW = 1_700_000_000
PAYLOAD = {"event": "invoice.paid", "customer": "Zoë Ångström", "amount": 1200, "id": "evt_1"}
# What the sender put on the wire: json.dumps' defaults, with non-ASCII written as UTF-8.
RAW = json.dumps(PAYLOAD, ensure_ascii=False).encode()


def hmac_hex(key: bytes, message: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(key, message, algorithm).hexdigest()


def hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, "sha256").digest()).decode()


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def only(findings: list[Finding], code: str) -> Finding:
    """The single finding, which must have ``code``."""
    assert codes(findings) == [code], [f.sentence() for f in findings]
    return findings[0]


# -- the correct case ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme", ["cloudaipilot", "github", "stripe", "standard", "slack", "shopify"]
)
def test_a_correct_signature_has_no_findings(scheme: str) -> None:
    """A request signed correctly for any preset verifies as is: no findings."""
    secret = WHSEC if scheme in ("standard", "stripe") else SECRET
    headers = sign_request(scheme, secret, RAW, timestamp=NOW)
    assert signature_matches(secret, RAW, headers, scheme, NOW)
    assert diagnose(secret, RAW, headers, scheme, NOW) == []


# -- re-serialized JSON ----------------------------------------------------------------------------


def reserialized_sender(**dumps: Any) -> dict[str, str]:
    """A sender that signs json.dumps(payload, **dumps) but sends RAW."""
    signed_bytes = json.dumps(PAYLOAD, **dumps).encode()
    assert signed_bytes != RAW
    return {"X-CloudAIPilot-Signature": "sha256=" + hmac_hex(SECRET.encode(), signed_bytes)}


def test_signature_over_compact_json() -> None:
    """Signed over separators=(',', ':') JSON (JSON.stringify style): named as compact."""
    headers = reserialized_sender(separators=(",", ":"), ensure_ascii=False)
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "reserialized_json")
    assert "re-serialized JSON (compact separators=(',', ':')" in finding.cause
    assert "not over the raw bytes" in finding.cause
    assert "verify the raw body before parsing it" in finding.fix


def test_signature_over_spaced_default_json() -> None:
    """Raw bytes are compact; the sender signed json.dumps' spaced default: named as such."""
    raw = json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False).encode()
    signed_bytes = json.dumps(PAYLOAD, ensure_ascii=False).encode()
    headers = {"X-CloudAIPilot-Signature": "sha256=" + hmac_hex(SECRET.encode(), signed_bytes)}
    finding = only(diagnose(SECRET, raw, headers, now=NOW), "reserialized_json")
    assert "json.dumps's default ', ' and ': ' separators" in finding.cause


def test_signature_over_sorted_keys() -> None:
    """Signed over sort_keys=True JSON: named as sorted keys."""
    headers = reserialized_sender(sort_keys=True, ensure_ascii=False)
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "reserialized_json")
    assert "sorted keys" in finding.cause


def test_signature_over_ascii_escaped_json() -> None:
    """Sent UTF-8, signed json.dumps' default ensure_ascii=True: named as \\uXXXX escaping."""
    headers = reserialized_sender()
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "reserialized_json")
    assert "non-ASCII escaped as \\uXXXX by ensure_ascii=True" in finding.cause


def test_signature_over_utf8_json_when_the_body_was_ascii_escaped() -> None:
    """Sent \\uXXXX-escaped, signed with ensure_ascii=False: named as written as UTF-8."""
    raw = json.dumps(PAYLOAD).encode()
    signed_bytes = json.dumps(PAYLOAD, ensure_ascii=False).encode()
    headers = {"X-CloudAIPilot-Signature": "sha256=" + hmac_hex(SECRET.encode(), signed_bytes)}
    finding = only(diagnose(SECRET, raw, headers, now=NOW), "reserialized_json")
    assert "non-ASCII written as UTF-8 by ensure_ascii=False" in finding.cause


def test_body_saved_with_a_trailing_newline() -> None:
    """A body file saved by an editor (newline added) is named, not taken for a bad secret."""
    headers = sign_request("cloudaipilot", SECRET, RAW)
    finding = only(diagnose(SECRET, RAW + b"\n", headers, now=NOW), "body_trailing_newline")
    assert "without a trailing newline" in finding.cause


# -- the secret ------------------------------------------------------------------------------------


def test_receivers_secret_has_a_trailing_newline() -> None:
    """The secret given (read from a file) ends in a newline: matches once stripped."""
    headers = sign_request("cloudaipilot", SECRET, RAW)
    finding = only(diagnose(SECRET + "\n", RAW, headers, now=NOW), "secret_whitespace")
    assert "the signature matches when the secret is stripped of its trailing newline" in (
        finding.cause
    )
    assert ".strip()" in finding.fix


def test_receivers_secret_has_surrounding_spaces() -> None:
    """A secret pasted with spaces around it: named as leading and trailing whitespace."""
    headers = sign_request("cloudaipilot", SECRET, RAW)
    finding = only(diagnose(f"  {SECRET} ", RAW, headers, now=NOW), "secret_whitespace")
    assert "stripped of its leading spaces and trailing space" in finding.cause


def test_senders_secret_has_a_trailing_newline() -> None:
    """The sender signs with its secret plus a newline: named on the sender's side."""
    headers = {"X-CloudAIPilot-Signature": "sha256=" + hmac_hex((SECRET + "\n").encode(), RAW)}
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "sender_secret_whitespace")
    assert "a trailing newline is added to the secret" in finding.cause
    assert "sender's side" in finding.fix


def test_standard_sender_used_the_whole_whsec_string_as_utf8() -> None:
    """Standard Webhooks: the sender keyed HMAC with 'whsec_...' as UTF-8 instead of decoding."""
    message = f"msg_1.{NOW}.".encode() + RAW
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": "v1," + hmac_b64(WHSEC.encode(), message),
    }
    finding = only(diagnose(WHSEC, RAW, headers, "standard", NOW), "whsec_not_decoded")
    assert "whole 'whsec_...' string as the UTF-8 key" in finding.cause
    assert "scheme 'stripe'" in finding.fix


def test_stripe_sender_base64_decoded_the_whsec_secret() -> None:
    """Stripe: the sender base64-decoded the part after whsec_ (the Standard Webhooks way)."""
    key = base64.b64decode(WHSEC.removeprefix("whsec_"))
    signature = hmac_hex(key, f"{NOW}.".encode() + RAW)
    headers = {"Stripe-Signature": f"t={NOW},v1={signature}"}
    finding = only(diagnose(WHSEC, RAW, headers, "stripe", NOW), "whsec_decoded")
    assert "base64-decoded the part after 'whsec_'" in finding.cause
    assert "whole 'whsec_...' string as UTF-8" in finding.fix


def test_a_standard_secret_that_is_not_whsec_base64_is_named() -> None:
    """--scheme standard with a secret that is not whsec_<base64>: the secret's form is wrong."""
    headers = sign_request("github", SECRET, RAW)
    findings = diagnose("not base64 at all!", RAW, headers, "standard", NOW)
    assert "secret_format" in codes(findings)


def test_a_different_secret_is_the_fallback() -> None:
    """No mistake explains it: the finding says the secret most likely differs."""
    headers = sign_request("cloudaipilot", "another-secret", RAW)
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "secret_differs")
    assert "the secret most likely differs between sender and receiver" in finding.fix


# -- encoding and prefix ---------------------------------------------------------------------------


def test_base64_digest_where_hex_is_expected() -> None:
    """cloudaipilot wants hex; the sender base64-encoded the digest."""
    headers = {"X-CloudAIPilot-Signature": "sha256=" + hmac_b64(SECRET.encode(), RAW)}
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "wrong_encoding")
    assert "is base64-encoded; cloudaipilot expects hex" in finding.cause
    assert "hexdigest()" in finding.fix


def test_hex_digest_where_base64_is_expected() -> None:
    """shopify wants base64; the sender sent hex."""
    headers = {"X-Shopify-Hmac-Sha256": hmac_hex(SECRET.encode(), RAW)}
    finding = only(diagnose(SECRET, RAW, headers, "shopify", NOW), "wrong_encoding")
    assert "is hex-encoded; shopify expects base64" in finding.cause


def test_missing_sha256_prefix() -> None:
    """The bare hex digest without 'sha256=': named as the missing prefix."""
    headers = {"X-CloudAIPilot-Signature": hmac_hex(SECRET.encode(), RAW)}
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "missing_prefix")
    assert "lacks the 'sha256=' prefix" in finding.cause


def test_sha1_prefix_over_a_sha256_digest() -> None:
    """'sha1=' in front of the right SHA-256 digest: the prefix is wrong, nothing else."""
    headers = {"X-CloudAIPilot-Signature": "sha1=" + hmac_hex(SECRET.encode(), RAW)}
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "wrong_prefix")
    assert "starts with 'sha1=' instead of 'sha256='" in finding.cause


def test_hmac_sha1_signature() -> None:
    """A legacy sender's 'sha1=<HMAC-SHA1>': named as SHA-1, not as a bad secret."""
    headers = {"X-CloudAIPilot-Signature": "sha1=" + hmac_hex(SECRET.encode(), RAW, "sha1")}
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "sha1")
    assert "HMAC-SHA1" in finding.cause and "SHA-256" in finding.fix


# -- another scheme --------------------------------------------------------------------------------


def test_github_signed_request_checked_as_cloudaipilot() -> None:
    """X-Hub-Signature-256 where X-CloudAIPilot-Signature is expected: the scheme is named."""
    headers = sign_request("github", SECRET, RAW)
    finding = only(diagnose(SECRET, RAW, headers, "cloudaipilot", NOW), "wrong_scheme")
    assert "signed the github way" in finding.cause
    assert "scheme 'github'" in finding.fix


def test_standard_signed_request_checked_as_stripe() -> None:
    """Standard Webhooks headers where Stripe-Signature is expected."""
    headers = sign_request("standard", WHSEC, RAW, timestamp=NOW)
    finding = only(diagnose(WHSEC, RAW, headers, "stripe", NOW), "wrong_scheme")
    assert "signed the standard way" in finding.cause


def test_other_presets_signed_message_format() -> None:
    """The right header, but the digest is over '{timestamp}.{body}' (Stripe's format)."""
    signature = hmac_hex(SECRET.encode(), f"{NOW}.".encode() + RAW)
    headers = {"X-CloudAIPilot-Signature": "sha256=" + signature, "webhook-timestamp": str(NOW)}
    finding = only(diagnose(SECRET, RAW, headers, now=NOW), "wrong_format")
    assert "'{timestamp}.{body}' (the stripe format)" in finding.cause


# -- timestamps ------------------------------------------------------------------------------------


def test_timestamp_in_the_past_beyond_tolerance() -> None:
    """A request signed an hour ago: the skew, its direction and the tolerance are named."""
    headers = sign_request("stripe", WHSEC, RAW, timestamp=NOW - 3600)
    finding = only(diagnose(WHSEC, RAW, headers, "stripe", NOW), "timestamp_skew")
    assert "3600 s in the past, beyond the 300 s tolerance" in finding.cause
    assert "replay" in finding.fix and "NTP" in finding.fix


def test_timestamp_in_the_future_beyond_tolerance() -> None:
    """A sender whose clock is 10 minutes ahead: 'in the future'."""
    headers = sign_request("slack", SECRET, RAW, timestamp=NOW + 600)
    finding = only(diagnose(SECRET, RAW, headers, "slack", NOW), "timestamp_skew")
    assert "600 s in the future" in finding.cause
    assert "sender's clock is ahead" in finding.fix


def test_timestamp_in_milliseconds() -> None:
    """A JavaScript sender's Date.now(): 13 digits, named as milliseconds."""
    headers = sign_request("standard", WHSEC, RAW, timestamp=NOW * 1000)
    finding = only(diagnose(WHSEC, RAW, headers, "standard", NOW), "timestamp_milliseconds")
    assert "milliseconds" in finding.cause


# -- headers stripped on the way -------------------------------------------------------------------


def test_signature_header_stripped_while_the_senders_other_headers_arrived() -> None:
    """webhook-signature gone, webhook-id and webhook-timestamp there: a proxy strips it."""
    headers = sign_request("standard", WHSEC, RAW, timestamp=NOW)
    del headers["webhook-signature"]
    finding = only(diagnose(WHSEC, RAW, headers, "standard", NOW), "header_stripped")
    assert "webhook-signature header of a standard sender did not arrive" in finding.cause
    assert "webhook-timestamp" in finding.cause
    assert "forward every header" in finding.fix


def test_timestamp_header_stripped() -> None:
    """Slack's signature arrived but its timestamp header did not."""
    headers = sign_request("slack", SECRET, RAW, timestamp=NOW)
    del headers["X-Slack-Request-Timestamp"]
    findings = diagnose(SECRET, RAW, headers, "slack", NOW)
    assert "header_stripped" in codes(findings)
    assert "X-Slack-Request-Timestamp" in findings[codes(findings).index("header_stripped")].cause


def test_no_header_of_the_sender_at_all() -> None:
    """None of the scheme's headers arrived: unsigned sender or a proxy stripping them all."""
    finding = only(
        diagnose(SECRET, RAW, {"Content-Type": "application/json"}, now=NOW), "no_signature_headers"
    )
    assert "none of the headers a cloudaipilot sender sends arrived" in finding.cause


def test_header_repeated_with_different_values() -> None:
    """A proxy that appends a second signature header: named as the repeated header."""
    signature = sign_request("cloudaipilot", SECRET, RAW)["X-CloudAIPilot-Signature"]
    headers = [
        ("X-CloudAIPilot-Signature", signature),
        ("X-CloudAIPilot-Signature", "sha256=" + "0" * 64),
    ]
    assert "repeated_header" in codes(diagnose(SECRET, RAW, headers, now=NOW))


# -- never the secret -----------------------------------------------------------------------------


def every_mistake() -> list[tuple[str, str, bytes, list[tuple[str, str]]]]:
    """(scheme, secret given, raw body, headers) for each mistake above."""
    cases: list[tuple[str, str, bytes, list[tuple[str, str]]]] = []

    def add(scheme: str, secret: str, headers: dict[str, str], body: bytes = RAW) -> None:
        cases.append((scheme, secret, body, list(headers.items())))

    add("cloudaipilot", SECRET, sign_request("cloudaipilot", SECRET, RAW))
    add("cloudaipilot", SECRET, reserialized_sender(separators=(",", ":")))
    add("cloudaipilot", SECRET + "\n", sign_request("cloudaipilot", SECRET, RAW))
    add("cloudaipilot", SECRET, {"X-CloudAIPilot-Signature": hmac_hex(SECRET.encode(), RAW)})
    add("cloudaipilot", SECRET, {"X-CloudAIPilot-Signature": hmac_b64(SECRET.encode(), RAW)})
    add("cloudaipilot", SECRET, sign_request("cloudaipilot", "another", RAW))
    add("cloudaipilot", SECRET, sign_request("github", SECRET, RAW))
    add("standard", WHSEC, sign_request("stripe", WHSEC, RAW, timestamp=NOW))
    add("stripe", WHSEC, sign_request("stripe", WHSEC, RAW, timestamp=NOW - 3600))
    add("standard", WHSEC, {"webhook-id": "msg_1", "webhook-timestamp": str(NOW)})
    return cases


def test_no_output_contains_the_secret_or_the_expected_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI, text and JSON: neither the secret nor the right digest is ever shown."""
    for scheme, secret, body, headers in every_mistake():
        body_file = tmp_path / "body.json"
        body_file.write_bytes(body)
        expected = sign_request(scheme, secret.strip(), body, timestamp=NOW, msg_id="msg_1")
        args = ["verify", "--scheme", scheme, "--secret", secret, "--body-file", str(body_file)]
        args += [item for name, value in headers for item in ("--header", f"{name}: {value}")]
        for extra in ([], ["--json"]):
            main([*args, "--now", str(NOW), *extra])
            shown = "".join(capsys.readouterr())
            assert secret.strip() not in shown
            assert WHSEC.removeprefix("whsec_") not in shown
            key = hmac.new(secret.strip().encode(), body, hashlib.sha256)
            for digest in (key.hexdigest(), base64.b64encode(key.digest()).decode()):
                assert digest not in shown
            for name, value in expected.items():
                if "signature" in name.lower() or "hmac" in name.lower():
                    digest = max(re.findall(r"[A-Za-z0-9+/]{20,}={0,2}", value), key=len)
                    assert digest not in shown


@settings(max_examples=40, deadline=None)
@given(
    # The marker keeps a short random secret from matching an ordinary word of a finding.
    secret=st.text(max_size=30).map(lambda s: f"S3CR3T-{s}-Qx7v"),
    body=st.binary(max_size=200),
    scheme=st.sampled_from(["cloudaipilot", "github", "slack", "shopify", "stripe"]),
)
def test_findings_never_hold_the_secret(secret: str, body: bytes, scheme: str) -> None:
    """Whatever the secret, body and scheme: correct means no findings, and a wrong secret's
    findings never quote either secret."""
    headers = sign_request(scheme, secret, body, timestamp=NOW)
    assert diagnose(secret, body, headers, scheme, NOW) == []
    wrong = secret + "-x"
    for finding in diagnose(wrong, body, headers, scheme, NOW):
        assert secret not in finding.sentence()
