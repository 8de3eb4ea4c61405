"""The records every layer reads: delivery statuses, attempt results and history rows.

They live at the bottom of the package because the queues, the stores, the worker, the CLI,
the dashboard and the metrics all speak them; nothing here imports anything but the standard
library and ``webhook_guard.core.delivery``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from webhook_guard.core.delivery import Delivery

__all__ = [
    "ATTEMPT_OUTCOMES",
    "DEFAULT_DEDUPE_SECONDS",
    "DEFAULT_MAX_REJECTIONS",
    "DEFAULT_RETENTION_SECONDS",
    "FAILED_STATUSES",
    "FINAL_STATUSES",
    "STATUSES",
    "AttemptRecord",
    "AttemptResult",
    "AttemptStatus",
    "Claimed",
    "DeliveryRecord",
    "RejectionRecord",
]

# How long every store keeps what it keeps, unless told otherwise.
DEFAULT_DEDUPE_SECONDS = 7 * 24 * 3600  # a delivery id dedupes for a sender's whole retry horizon
DEFAULT_RETENTION_SECONDS = 30 * 24 * 3600  # processed deliveries and rejections
DEFAULT_MAX_REJECTIONS = 10_000  # rejections kept at most, whatever their age

# Every status a delivery can be in. ``ignored``: no handler matched its event type (neither
# processed nor failed; replay it once a handler exists).
STATUSES = ("queued", "processing", "processed", "ignored", "retrying", "dead")
# What "failed" means from the sender's side (``history --failed``).
FAILED_STATUSES = ("retrying", "dead")
# Nothing more will happen to a delivery in these statuses unless it is replayed.
FINAL_STATUSES = ("processed", "ignored", "dead")

AttemptStatus = Literal["processed", "ignored", "retrying", "dead"]
# How an attempt row in the history ends, by the attempt's status.
ATTEMPT_OUTCOMES: dict[str, str] = {
    "processed": "processed",
    "ignored": "ignored",
    "retrying": "failed",
    "dead": "dead",
}


@dataclass(frozen=True)
class AttemptResult:
    """How an attempt ended. ``delay`` is set for ``retrying``; ``error`` holds the reason (for
    ``ignored``, which event type found no handler)."""

    status: AttemptStatus
    delay: float | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class Claimed:
    """A delivery leased to one worker; ``token`` fences every later write about it."""

    delivery: Delivery
    token: str


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt in a delivery's history: when it ran and how it ended."""

    attempt: int
    started_at: float
    finished_at: float | None
    outcome: str | None
    error: str | None
    traceback: str | None


@dataclass(frozen=True)
class DeliveryRecord:
    """One accepted delivery as the history shows it."""

    id: str
    endpoint: str
    scheme: str
    event_type: str | None
    dedupe_key: str | None
    received_at: float
    status: str
    attempts: int
    run_at: float
    last_error: str | None
    updated_at: float
    body_size: int
    body_sha256: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    attempt_log: tuple[AttemptRecord, ...] = field(default=())

    def delivery(self) -> Delivery:
        """The stored delivery as a handler gets it (attempt 1): what a replay publishes."""
        return Delivery(
            id=self.id,
            endpoint=self.endpoint,
            body=self.body,
            headers=self.headers,
            event_type=self.event_type,
            dedupe_key=self.dedupe_key,
            received_at=self.received_at,
            scheme=self.scheme,
        )


@dataclass(frozen=True)
class RejectionRecord:
    """One refused request as the history shows it: metadata only, never the body."""

    id: int
    received_at: float
    endpoint: str
    method: str
    path: str
    remote_addr: str | None
    reason: str
    hint: str
    body_size: int
    body_sha256: str | None
