"""The Guard: fail closed, the response contract in the core, and no secret in any log line."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard
from webhook_guard.core.queue import EnqueueResult, Rejection
from webhook_guard.exceptions import ConfigurationError
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import sign_request

SECRET = "guard-secret-ZZ9"
BODY = b'{"event": "invoice.paid"}'


def test_a_guard_without_a_secret_refuses_to_start(tmp_path: Path) -> None:
    """Fail closed: no secret is a ConfigurationError that says how to fix it."""
    with pytest.raises(ConfigurationError, match="no webhook secret configured"):
        Guard(queue=str(tmp_path / "q.db"))
    with pytest.raises(ConfigurationError, match="no webhook secret configured"):
        Guard([], queue=str(tmp_path / "q.db"))


def test_insecure_dev_mode_is_loud_and_accepts_unsigned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The explicit development flag logs CRITICAL and lets an unsigned request in."""
    with caplog.at_level(logging.CRITICAL, logger="webhook_guard"):
        guard = Guard(queue=str(tmp_path / "q.db"), insecure_dev_mode=True, worker="external")
    assert any("INSECURE" in r.message and r.levelno == logging.CRITICAL for r in caplog.records)
    assert guard.receive("POST", "/webhook", {}, BODY).status == 200


def test_secret_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    """A secret read from a file with its newline would never match: refused at start-up."""
    with pytest.raises(ConfigurationError, match="whitespace") as caught:
        Guard(SECRET + "\n", queue=str(tmp_path / "q.db"))
    assert SECRET not in str(caught.value)


def test_unknown_scheme_names_the_choices(tmp_path: Path) -> None:
    """A typo in the scheme lists the presets."""
    with pytest.raises(ConfigurationError, match="github"):
        Guard(SECRET, scheme="githbu", queue=str(tmp_path / "q.db"))


def test_no_secret_or_credential_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rejections are logged with code and hint; never the secret, digest or Authorization."""
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), worker="external")
    good = sign_request("cloudaipilot", SECRET, BODY)["X-CloudAIPilot-Signature"]
    with caplog.at_level(logging.DEBUG):
        guard.receive("POST", "/webhook", {"Authorization": "Bearer tok-777"}, BODY)
        guard.receive("POST", "/webhook", {"X-CloudAIPilot-Signature": good}, BODY + b" ")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "missing_signature" in text and "signature_mismatch" in text
    for secretish in (SECRET, good[7:], "tok-777"):
        assert secretish not in text


class BrokenQueue:
    """A queue whose store fails in a way no backend anticipated (a bare RuntimeError): the unit
    under test is the Guard's promise to answer 503, not a backend, so nothing real can stand in."""

    def enqueue(self, delivery: Delivery) -> EnqueueResult:
        raise RuntimeError("disk on fire")

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult:
        raise RuntimeError("disk on fire")

    def record_rejection(self, rejection: Rejection) -> None:
        raise RuntimeError("disk on fire")

    async def arecord_rejection(self, rejection: Rejection) -> None:
        raise RuntimeError("disk on fire")

    def close(self) -> None:
        pass


def test_any_store_failure_is_503_and_a_history_failure_never_crashes() -> None:
    """An unexpected enqueue error is 503 + Retry-After; a failed rejection record still 401s."""
    guard = Guard(SECRET, queue=BrokenQueue(), worker="external")
    headers = sign_request("cloudaipilot", SECRET, BODY)
    outcome = guard.receive("POST", "/webhook", headers, BODY)
    assert outcome.status == 503 and dict(outcome.headers)["Retry-After"]
    assert json.loads(outcome.body) == {"error": "queue_unavailable"}
    assert guard.receive("POST", "/webhook", headers, BODY + b"x").status == 401
    assert asyncio.run(guard.areceive("POST", "/webhook", headers, BODY)).status == 503
    assert asyncio.run(guard.areceive("POST", "/webhook", headers, b"x")).status == 401


def test_areceive_enqueues_durably_like_receive(tmp_path: Path) -> None:
    """The async path stores the same delivery and dedupes against the sync path."""
    guard = Guard(SECRET, queue=SQLiteQueue(tmp_path / "q.db"), worker="external")
    headers = sign_request("cloudaipilot", SECRET, BODY)
    first = guard.receive("POST", "/webhook", headers, BODY)
    second = asyncio.run(guard.areceive("POST", "/webhook", headers, BODY))
    assert json.loads(second.body) == {"status": "duplicate", "id": json.loads(first.body)["id"]}


def test_method_and_cap_are_checked_before_the_signature(tmp_path: Path) -> None:
    """GET is 405 and an oversized body 413, whatever the headers say."""
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), worker="external", max_body_bytes=10)
    assert guard.receive("GET", "/webhook", {}, b"").status == 405
    assert guard.receive("post", "/webhook", {}, b"x" * 11).status == 413


def test_config_and_keyword_settings_together_are_refused(tmp_path: Path) -> None:
    """One way to build a Guard: config= with a secret or endpoint beside it is an error,
    never a silent choice of one over the other."""
    from webhook_guard.core.config import GuardConfig

    config = GuardConfig(secrets=(SECRET,), queue=str(tmp_path / "q.db"), endpoint="cfg")
    with pytest.raises(ConfigurationError, match=r"not both.*endpoint, secret"):
        Guard("other", endpoint="x", config=config)
    with pytest.raises(ConfigurationError, match=r"queue URL goes in config\.queue"):
        Guard(config=config, queue=str(tmp_path / "other.db"))


def test_a_scheme_object_and_a_different_tolerance_are_refused(tmp_path: Path) -> None:
    """Guard(scheme=github(), tolerance_seconds=10) would verify with 300 s: refused instead."""
    from webhook_guard.core.schemes import github

    with pytest.raises(ConfigurationError, match="conflicts with the scheme object"):
        Guard(SECRET, scheme=github(), tolerance_seconds=10, queue=str(tmp_path / "q.db"))
    guard = Guard(
        SECRET, scheme=github(tolerance=10), tolerance_seconds=10, queue=str(tmp_path / "q.db")
    )
    assert guard.scheme.tolerance == 10


def test_the_environment_fills_what_the_code_does_not_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WEBHOOK_GUARD_WORKER=external applies to a Guard built the README's way; an explicit
    argument still wins over the environment."""
    monkeypatch.setenv("WEBHOOK_GUARD_WORKER", "external")
    monkeypatch.setenv("WEBHOOK_GUARD_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("WEBHOOK_GUARD_DB", str(tmp_path / "env.db"))
    guard = Guard(SECRET, endpoint="from-env")
    assert guard.config.worker == "external" and guard.max_body_bytes == 2048
    assert guard.queue.path == str(tmp_path / "env.db")  # type: ignore[attr-defined]
    explicit = Guard(SECRET, endpoint="explicit", worker="embedded", max_body_bytes=10)
    assert explicit.config.worker == "embedded" and explicit.max_body_bytes == 10
    monkeypatch.setenv("WEBHOOK_SECRET", "from-the-environment")
    secrets = Guard(endpoint="env-secret").config.secrets
    assert [s.reveal() for s in secrets] == ["from-the-environment"]


# -- replay limits and what is stored -------------------------------------------------------


def _stored_headers(guard: Guard, outcome_body: bytes) -> dict[str, str]:
    queue = guard.queue
    assert isinstance(queue, SQLiteQueue)
    delivery = queue.load(json.loads(outcome_body)["id"])
    assert delivery is not None
    return dict(delivery.headers)


def test_a_captured_request_under_a_new_delivery_header_is_a_duplicate(tmp_path: Path) -> None:
    """Changing or dropping the unsigned X-CloudAIPilot-Delivery does not make a captured
    request new; a forged X-CloudAIPilot-Event does not re-route its signed body."""
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), worker="external")
    headers = sign_request("cloudaipilot", SECRET, BODY, msg_id="dlv-1")
    first = guard.receive("POST", "/webhook", headers, BODY)
    assert json.loads(first.body)["status"] == "ok"
    forged = {**headers, "X-CloudAIPilot-Delivery": "dlv-2", "X-CloudAIPilot-Event": "admin.wipe"}
    dropped = {k: v for k, v in headers.items() if k != "X-CloudAIPilot-Delivery"}
    for replayed in (forged, dropped):
        again = json.loads(guard.receive("POST", "/webhook", replayed, BODY).body)
        assert again == {"status": "duplicate", "id": json.loads(first.body)["id"]}
    queue = guard.queue
    assert isinstance(queue, SQLiteQueue)
    delivery = queue.load(json.loads(first.body)["id"])
    assert delivery is not None and delivery.event_type == "invoice.paid"


@pytest.mark.parametrize(
    "preset", ["cloudaipilot", "github", "stripe", "standard", "slack", "shopify"]
)
def test_no_signature_header_is_stored(preset: str, tmp_path: Path) -> None:
    """The scheme's signature header is not in the stored delivery's headers, whoever reads it."""
    secret = "whsec_" + "c3RvcmVkLXNlY3JldA==" if preset == "standard" else SECRET
    guard = Guard(secret, scheme=preset, queue=str(tmp_path / "q.db"), worker="external")
    headers = sign_request(preset, secret, BODY, event="invoice.paid")
    outcome = guard.receive("POST", "/webhook", headers, BODY)
    assert outcome.status == 200
    stored = _stored_headers(guard, outcome.body)
    for name in guard.scheme.signature_headers:
        assert name.lower() not in stored
    assert headers[guard.scheme.signature_header] not in stored.values()
    assert stored["content-type"] == "application/json"


def test_svix_signature_is_not_stored_either(tmp_path: Path) -> None:
    """Standard Webhooks sent with svix-* names: svix-signature is dropped, svix-id kept."""
    secret = "whsec_c3RvcmVkLXNlY3JldA=="
    guard = Guard(secret, scheme="standard", queue=str(tmp_path / "q.db"), worker="external")
    signed = sign_request("standard", secret, BODY, msg_id="msg_svix")
    headers = {k.replace("webhook-", "svix-"): v for k, v in signed.items()}
    outcome = guard.receive("POST", "/webhook", headers, BODY)
    stored = _stored_headers(guard, outcome.body)
    assert "svix-signature" not in stored and stored["svix-id"] == "msg_svix"


def test_redact_headers_adds_patterns_to_the_defaults(tmp_path: Path) -> None:
    """Guard(redact_headers=...) drops headers matching its patterns too, and the defaults
    still apply (X-Access-Key, X-Signing-Key)."""
    guard = Guard(
        SECRET, queue=str(tmp_path / "q.db"), worker="external", redact_headers=["tenant_pin"]
    )
    headers = {
        **sign_request("cloudaipilot", SECRET, BODY),
        "X-Tenant-Pin": "4321",
        "X-Access-Key": "AKIA-canary",
        "X-Signing-Key": "sk-canary",
        "X-Kept": "yes",
    }
    outcome = guard.receive("POST", "/webhook", headers, BODY)
    stored = _stored_headers(guard, outcome.body)
    assert stored["x-kept"] == "yes"
    for name in ("x-tenant-pin", "x-access-key", "x-signing-key"):
        assert name not in stored
    assert guard.config.redact_headers == ("tenant-pin",)


def test_redact_headers_setting_from_a_mapping() -> None:
    """REDACT_HEADERS (a list or comma-separated) becomes GuardConfig.redact_headers."""
    from webhook_guard.core.config import GuardConfig

    assert GuardConfig.from_mapping(
        {"SECRET": SECRET, "REDACT_HEADERS": "X_Pin, tenant"}
    ).redact_headers == ("x-pin", "tenant")
    assert GuardConfig.from_mapping(
        {"SECRET": SECRET, "REDACT_HEADERS": ["Pin"]}
    ).redact_headers == ("pin",)


def test_the_sender_id_is_kept_for_display(tmp_path: Path) -> None:
    """The unsigned id header's value reaches the Delivery as sender_id."""
    guard = Guard(SECRET, queue=str(tmp_path / "q.db"), worker="external")
    headers = sign_request("cloudaipilot", SECRET, BODY, msg_id="dlv-shown")
    delivery = guard.admit("POST", headers, BODY)
    assert delivery.sender_id == "dlv-shown"
    assert delivery.dedupe_key is not None and "dlv-shown" not in delivery.dedupe_key


def test_a_stale_body_timestamp_is_401_through_the_guard(tmp_path: Path) -> None:
    """With body_timestamp_field, a captured request replayed late is refused with 401."""
    from webhook_guard.core.schemes import cloudaipilot
    from webhook_guard.testing import FrozenClock

    clock = FrozenClock()
    scheme = cloudaipilot(body_timestamp_field="timestamp")
    guard = Guard(
        SECRET, scheme=scheme, queue=str(tmp_path / "q.db"), worker="external", clock=clock
    )
    body = json.dumps({"event": "invoice.paid", "timestamp": int(clock())}).encode()
    headers = sign_request(scheme, SECRET, body)
    assert guard.receive("POST", "/webhook", headers, body).status == 200
    clock.advance(7 * 24 * 3600 + 1)
    late = guard.receive("POST", "/webhook", headers, body)
    assert (late.status, json.loads(late.body)) == (401, {"error": "timestamp_out_of_tolerance"})
