"""The protocols every queue backend implements: the request side (``Queue``) and, for queues
that this package consumes itself, the worker side (``ConsumableQueue``)."""

from __future__ import annotations

import enum
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from webhook_guard.core.delivery import Delivery
from webhook_guard.core.records import AttemptResult, Claimed

__all__ = [
    "ConsumableQueue",
    "EnqueueResult",
    "Enqueued",
    "Queue",
    "Rejection",
    "store_key",
]


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

    def enqueue(self, delivery: Delivery) -> EnqueueResult:
        """Dedupe and store ``delivery`` durably; ``QueueUnavailable`` for any failure."""
        ...

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult:
        """``enqueue`` for the event loop: must never block it."""
        ...

    def record_rejection(self, rejection: Rejection) -> None:
        """Keep a refused request's metadata in the history (best effort)."""
        ...

    async def arecord_rejection(self, rejection: Rejection) -> None:
        """``record_rejection`` for the event loop."""
        ...

    def close(self) -> None:
        """Release what the queue holds in the calling thread or process."""
        ...


@runtime_checkable
class ConsumableQueue(Queue, Protocol):
    """A queue that ``webhook_guard``'s own worker consumes (the embedded SQLite queue).

    Claims are filtered by endpoint: a worker never takes a delivery of an endpoint it does not
    serve, so it stays queued for the process that does.
    """

    @property
    def store_key(self) -> str:
        """Names the store itself (e.g. the database file): queue objects with one key share a
        consumer and an endpoint namespace in a process."""
        ...

    @property
    def enqueued(self) -> threading.Event:
        """Set when this process enqueued something: wakes its idle consumer at once."""
        ...

    def claim(
        self, lease_seconds: float, endpoints: Collection[str] | None = None
    ) -> Claimed | None:
        """Lease the earliest due delivery of ``endpoints`` (None: any endpoint), or one whose
        worker's lease expired."""
        ...

    def heartbeat(self, claimed: Claimed, lease_seconds: float) -> bool:
        """Extend a claim's lease; False once another worker owns the delivery."""
        ...

    def finish(self, claimed: Claimed, result: AttemptResult) -> bool:
        """Record how the attempt ended; False (and no write) for a worker that lost its lease."""
        ...

    def next_due_in(self, endpoints: Collection[str] | None = None) -> float | None:
        """Seconds until a delivery of ``endpoints`` (None: any) is due (0: now), None if none
        waits."""
        ...

    def housekeeping(self) -> None:
        """Periodic maintenance (purge, checkpoint) that a consumer runs now and then."""
        ...


def store_key(queue: object) -> str:
    """The store a queue object writes to: its ``store_key`` if it has one, else the object."""
    key = getattr(queue, "store_key", None)
    return key if isinstance(key, str) else f"object:{id(queue)}"
