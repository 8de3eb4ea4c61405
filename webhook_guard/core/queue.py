"""The protocols every queue backend and history store implements."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from webhook_guard.core.delivery import Delivery


class Enqueued(enum.Enum):
    """What ``enqueue`` did: stored a new delivery, or found one with the same dedupe key."""

    NEW = "new"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class EnqueueResult:
    status: Enqueued
    delivery_id: str  # for a duplicate, the id of the delivery first accepted


@dataclass(frozen=True)
class Rejection:
    """A refused request, as metadata only: never the body, never a secret."""

    received_at: float
    endpoint: str
    method: str
    path: str
    remote_addr: str | None
    reason: str
    hint: str
    body_size: int
    body_sha256: str | None


@runtime_checkable
class Queue(Protocol):
    """A durable queue. ``enqueue`` returns only once the delivery survives a crash, dedupes
    on ``delivery.dedupe_key`` (scoped by endpoint) atomically, and raises ``QueueUnavailable``
    for any failure. ``aenqueue`` must not block the event loop."""

    def enqueue(self, delivery: Delivery) -> EnqueueResult: ...

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult: ...

    def record_rejection(self, rejection: Rejection) -> None: ...

    async def arecord_rejection(self, rejection: Rejection) -> None: ...

    def close(self) -> None: ...
