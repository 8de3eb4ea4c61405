"""What happens after a handler fails: retry later (and when), or dead-letter now.

One policy for every queue engine. Exponential backoff with full jitter; a handler's
``Retry(after=...)`` wins; an exception that carries an HTTP response from an API call
(``exc.response.status_code``, as requests and httpx raise) is classified by status.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from webhook_guard.exceptions import ConfigurationError, PermanentFailure, Retry

# An API that answers these will answer the same to a retry: fix the cause, then replay.
PERMANENT_STATUSES = {
    401: "the API rejected our credentials (401): fix the API key or token, then replay",
    403: "the API forbids this call (403): fix the permissions, then replay",
    404: "the API does not know this resource (404): check the id or URL, then replay",
}
# Worth retrying: the API is busy, conflicting or failing for now.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a delivery gets, and how long to wait between them."""

    max_attempts: int = 8
    base_seconds: float = 2.0
    factor: float = 2.0
    cap_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")
        if self.base_seconds < 0 or self.cap_seconds < 0 or self.factor < 1:
            raise ConfigurationError("RetryPolicy: delays must be >= 0 and factor >= 1")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: a uniform delay up to base * factor**(attempt-1), capped."""
        try:
            ceiling = min(self.cap_seconds, self.base_seconds * self.factor ** max(0, attempt - 1))
        except OverflowError:  # factor**attempt passes the float range after ~1000 attempts
            ceiling = self.cap_seconds if self.base_seconds else 0.0
        return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True)
class Decision:
    """The worker's next step for a failed attempt. ``delay`` is None for a dead letter."""

    delay: float | None
    reason: str

    @property
    def is_dead(self) -> bool:
        """True when the delivery is dead-lettered instead of retried."""
        return self.delay is None


def decide(error: BaseException, attempt: int, policy: RetryPolicy) -> Decision:
    """Retry with a delay, or dead-letter, for a handler that raised ``error`` on ``attempt``."""
    reason = _describe(error)
    if isinstance(error, PermanentFailure):
        return Decision(None, f"permanent failure: {reason}")
    status = _http_status(error)
    if status in PERMANENT_STATUSES:
        return Decision(None, PERMANENT_STATUSES[status])
    if attempt >= policy.max_attempts:
        return Decision(None, f"gave up after {attempt} attempts: {reason}")
    delay = policy.backoff(attempt)
    if isinstance(error, Retry) and error.after is not None:
        delay = max(0.0, float(error.after))
    elif status is not None and (status in RETRYABLE_STATUSES or status >= 500):
        delay = max(delay, _retry_after(error) or 0.0)
    return Decision(min(delay, policy.cap_seconds), reason)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _http_status(error: BaseException) -> int | None:
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(error: BaseException) -> float | None:
    """Seconds from the ``Retry-After`` header of the error's response (seconds or HTTP date)."""
    headers = getattr(getattr(error, "response", None), "headers", None)
    try:
        value = headers.get("Retry-After") if headers is not None else None
    except Exception:  # a foreign object's .get may do anything; a hint is not worth a crash
        return None
    if not isinstance(value, str):
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
