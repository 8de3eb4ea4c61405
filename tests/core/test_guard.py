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
