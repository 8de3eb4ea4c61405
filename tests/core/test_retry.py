"""webhook_guard.core.retry: backoff with full jitter, and what decide() makes of each failure.

The API errors here carry tiny fake responses rather than real ``requests``/``httpx`` ones: the
contract under test is duck typing (``exc.response.status_code`` and ``exc.response.headers``),
so any object with those attributes must be understood, and the core must not import either
library.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from webhook_guard.core.retry import PERMANENT_STATUSES, RetryPolicy, decide
from webhook_guard.exceptions import ConfigurationError, PermanentFailure, Retry

QUICK = RetryPolicy(max_attempts=5, base_seconds=0.001, factor=2.0, cap_seconds=600.0)


@dataclass
class FakeResponse:
    """Just the two attributes requests' and httpx's responses share that decide() reads."""

    status_code: Any
    headers: Any = field(default_factory=dict)


class ApiError(Exception):
    """Shaped like requests.HTTPError / httpx.HTTPStatusError: the response rides on .response."""

    def __init__(self, status: Any, headers: Any = None) -> None:
        super().__init__(f"API answered {status}")
        self.response = FakeResponse(status, {} if headers is None else headers)


class ExplodingHeaders:
    """A foreign headers object whose .get raises."""

    def get(self, name: str) -> str:
        raise RuntimeError("boom")


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_full_jitter_stays_within_bounds() -> None:
    """Each delay lies in [0, min(cap, base * factor**(n-1))] and spreads across that range."""
    policy = RetryPolicy(max_attempts=12, base_seconds=2.0, factor=3.0, cap_seconds=500.0)
    rng = random.Random(20240611)
    for attempt in range(1, 13):
        ceiling = min(policy.cap_seconds, policy.base_seconds * policy.factor ** (attempt - 1))
        samples = [policy.backoff(attempt, rng) for _ in range(500)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > 0.9 * ceiling and min(samples) < 0.1 * ceiling


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    """The same seed gives the same delays."""
    first = [QUICK.backoff(n, random.Random(7)) for n in range(1, 6)]
    again = [QUICK.backoff(n, random.Random(7)) for n in range(1, 6)]
    assert first == again


def test_backoff_survives_huge_attempt_numbers() -> None:
    """Attempt 5000 (factor**n past the float range) is still a delay within the cap."""
    policy = RetryPolicy(max_attempts=10_000, base_seconds=1.0, factor=2.0, cap_seconds=60.0)
    assert 0 <= policy.backoff(5000, random.Random(1)) <= 60.0
    assert RetryPolicy(base_seconds=0.0, max_attempts=10_000).backoff(5000) == 0.0


@pytest.mark.parametrize(
    "settings",
    [{"max_attempts": 0}, {"base_seconds": -1}, {"cap_seconds": -1}, {"factor": 0.5}],
)
def test_invalid_policy_is_a_configuration_error(settings: dict[str, Any]) -> None:
    """A policy with no attempts, negative delays or a shrinking factor is refused."""
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        RetryPolicy(**settings)


# -- decide -----------------------------------------------------------------------------------


def test_retry_after_is_honoured() -> None:
    """Retry(after=30) from a handler gives a delay of exactly 30 seconds."""
    decision = decide(Retry(after=30), 1, QUICK)
    assert decision.delay == 30 and not decision.is_dead


def test_retry_after_is_capped() -> None:
    """A handler's Retry(after=...) longer than the policy's cap waits the cap."""
    assert decide(Retry(after=10_000), 1, QUICK).delay == QUICK.cap_seconds


def test_retry_without_after_uses_backoff() -> None:
    """Retry() with no delay falls back to the policy's backoff."""
    decision = decide(Retry(), 2, QUICK)
    assert decision.delay is not None and 0 <= decision.delay <= 0.002


def test_permanent_failure_is_dead_at_once() -> None:
    """PermanentFailure dead-letters on the first attempt, with its reason."""
    decision = decide(PermanentFailure("order 7 does not exist"), 1, QUICK)
    assert decision.is_dead and decision.delay is None
    assert "permanent failure" in decision.reason
    assert "order 7 does not exist" in decision.reason


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "credentials"), (403, "permissions"), (404, "resource")],
)
def test_permanent_http_status_is_dead_with_cause(status: int, words: str) -> None:
    """An API error with 401/403/404 is dead at once, and the reason says what to fix."""
    decision = decide(ApiError(status), 1, QUICK)
    assert decision.is_dead
    assert decision.reason == PERMANENT_STATUSES[status]
    assert str(status) in decision.reason and words in decision.reason
    assert "replay" in decision.reason


def test_429_waits_at_least_retry_after() -> None:
    """A 429 whose Retry-After says 7 waits at least 7 seconds."""
    decision = decide(ApiError(429, {"Retry-After": "7"}), 1, QUICK)
    assert decision.delay is not None and 7 <= decision.delay <= QUICK.cap_seconds


def test_retry_after_as_http_date() -> None:
    """A Retry-After HTTP date two minutes ahead waits about two minutes."""
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    decision = decide(ApiError(503, {"Retry-After": when}), 1, QUICK)
    assert decision.delay is not None and 100 <= decision.delay <= 121


@pytest.mark.parametrize(
    "headers", [{"Retry-After": "soon"}, {"Retry-After": 7}, ExplodingHeaders()]
)
def test_unusable_retry_after_falls_back_to_backoff(headers: Any) -> None:
    """A garbage Retry-After, or headers that raise, fall back to backoff and never crash."""
    decision = decide(ApiError(429, headers), 1, QUICK)
    assert decision.delay is not None and decision.delay <= 0.001


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 409, 425])
def test_transient_http_status_is_retried(status: int) -> None:
    """5xx and the retryable 4xx are retried, not dead-lettered."""
    decision = decide(ApiError(status), 1, QUICK)
    assert not decision.is_dead
    assert f"API answered {status}" in decision.reason


@pytest.mark.parametrize("status", ["503", None, 503.0])
def test_non_integer_status_is_a_plain_error(status: Any) -> None:
    """A response whose status_code is not an int is treated as an ordinary error."""
    assert not decide(ApiError(status), 1, QUICK).is_dead


def test_ordinary_exception_is_retried_with_its_name() -> None:
    """Any other exception is retried; the reason names its type and message."""
    decision = decide(KeyError("customer"), 1, QUICK)
    assert not decision.is_dead
    assert decision.reason == "KeyError: 'customer'"


def test_last_attempt_is_dead() -> None:
    """On the last allowed attempt a failure is dead: "gave up after N attempts"."""
    decision = decide(ValueError("still broken"), QUICK.max_attempts, QUICK)
    assert decision.is_dead
    assert decision.reason.startswith(f"gave up after {QUICK.max_attempts} attempts")
    assert "still broken" in decision.reason


@pytest.mark.parametrize(
    "error", [Retry(after=1), ApiError(503), ApiError(429, {"Retry-After": "1"})]
)
def test_last_attempt_is_dead_even_when_retryable(error: BaseException) -> None:
    """Retry(...), a 503 or a 429 on the last attempt are dead too: attempts are bounded."""
    assert decide(error, QUICK.max_attempts, QUICK).is_dead


def test_one_attempt_policy_never_retries() -> None:
    """With max_attempts=1 the first failure is dead."""
    assert decide(RuntimeError("x"), 1, RetryPolicy(max_attempts=1)).is_dead
