"""webhook_guard.core.outcome: the response contract every adapter renders byte for byte."""

from __future__ import annotations

import json

import pytest

from webhook_guard import exceptions
from webhook_guard.core.outcome import (
    RETRY_AFTER_SECONDS,
    Outcome,
    accepted,
    duplicate,
    rejected,
    unavailable,
)
from webhook_guard.exceptions import QueueUnavailable, Rejected

REJECTIONS = sorted(
    (
        cls
        for cls in vars(exceptions).values()
        if isinstance(cls, type) and issubclass(cls, Rejected)
    ),
    key=lambda cls: cls.__name__,
)


def header(outcome: Outcome, name: str) -> str | None:
    return next((v for k, v in outcome.headers if k.lower() == name.lower()), None)


def test_accepted_body() -> None:
    """A new delivery is 200 {"status": "ok", "id": ...} as JSON."""
    outcome = accepted("d-1")
    assert (outcome.status, outcome.status_line) == (200, "200 OK")
    assert outcome.body == b'{"status": "ok", "id": "d-1"}'
    assert header(outcome, "Content-Type") == "application/json"
    assert header(outcome, "Content-Length") == str(len(outcome.body))


def test_duplicate_body() -> None:
    """A duplicate is 200 {"status": "duplicate", "id": ...}."""
    outcome = duplicate("d-1")
    assert outcome.status == 200
    assert json.loads(outcome.body) == {"status": "duplicate", "id": "d-1"}


@pytest.mark.parametrize("error_class", REJECTIONS, ids=lambda cls: cls.__name__)
def test_rejection_sends_the_code_never_the_hint(error_class: type[Rejected]) -> None:
    """Every rejection is its status with {"error": code}; the hint stays out of the response."""
    outcome = rejected(error_class("hint with internals: secret-ish detail"))
    assert outcome.status == error_class.status
    assert json.loads(outcome.body) == {"error": error_class.code}
    assert b"internals" not in outcome.body
    assert outcome.reason, f"no reason phrase for {outcome.status}"
    assert header(outcome, "Content-Length") == str(len(outcome.body))


def test_every_rejection_is_a_4xx_with_its_own_code() -> None:
    """Rejections are 4xx and their codes are distinct."""
    concrete = [cls for cls in REJECTIONS if cls is not Rejected]
    assert all(400 <= cls.status < 500 for cls in concrete)
    assert len({cls.code for cls in concrete}) == len(concrete)


def test_method_not_allowed_says_allow_post() -> None:
    """405 carries Allow: POST."""
    assert header(rejected(exceptions.MethodNotAllowed()), "Allow") == "POST"


def test_payload_too_large_closes_the_connection() -> None:
    """413 asks the transport to close the connection (the rest of the body was not read),
    without a hop-by-hop header that WSGI forbids."""
    outcome = rejected(exceptions.PayloadTooLarge())
    assert outcome.close_connection
    assert header(outcome, "Connection") is None


def test_queue_unavailable_is_503_with_retry_after() -> None:
    """A queue failure is 503 {"error": "queue_unavailable"} with Retry-After."""
    outcome = unavailable(QueueUnavailable("disk full"))
    assert outcome.status_line == "503 Service Unavailable"
    assert json.loads(outcome.body) == {"error": "queue_unavailable"}
    assert header(outcome, "Retry-After") == str(RETRY_AFTER_SECONDS)
    assert b"disk" not in outcome.body
