"""The delivery store: dedupe and history for queue engines that carry deliveries elsewhere.

The embedded SQLite queue is queue and store at once. A broker-backed queue (Celery, RQ,
Dramatiq, arq) keeps its messages in the broker and uses a store for the rest: ``reserve``
dedupes and records the delivery before the broker sees it, ``release`` undoes that when
publishing fails (or the sender's retry would be dropped as a duplicate of nothing), and the
engine's worker reports each attempt so that ``history --failed`` and ``replay`` work the same
whatever the engine.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from webhook_guard.core.delivery import Delivery
from webhook_guard.core.queue import EnqueueResult, Rejection
from webhook_guard.core.records import AttemptResult, DeliveryRecord, RejectionRecord


@runtime_checkable
class DeliveryStore(Protocol):
    """Dedupe and history for broker-backed queues: what a store keeps while a broker carries
    the delivery."""

    def reserve(self, delivery: Delivery, engine: str) -> EnqueueResult:
        """Dedupe on ``delivery.dedupe_key`` and record the delivery as queued, atomically."""
        ...

    def release(self, delivery: Delivery) -> None:
        """Forget a reserved delivery and its dedupe key: its publish failed."""
        ...

    def attempt_started(self, delivery_id: str, attempt: int) -> None:
        """Record that attempt ``attempt`` of a delivery began (status processing)."""
        ...

    def attempt_finished(self, delivery_id: str, attempt: int, result: AttemptResult) -> None:
        """Record how attempt ``attempt`` ended, unless a later attempt already started."""
        ...

    def load(self, delivery_id: str) -> Delivery | None:
        """The stored delivery, body and headers included (for replay)."""
        ...

    def mark_replayed(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> list[str]:
        """Queue deliveries again with a fresh attempt budget; return their ids."""
        ...

    def record_rejection(self, rejection: Rejection) -> None:
        """Keep a refused request's metadata in the history."""
        ...

    async def arecord_rejection(self, rejection: Rejection) -> None:
        """``record_rejection`` for the event loop."""
        ...


@runtime_checkable
class HistoryReader(Protocol):
    """What ``history`` and ``show`` read: the SQLite queue and the Redis store both offer it."""

    def deliveries(
        self,
        *,
        statuses: tuple[str, ...] = (),
        since: float | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        before: tuple[float, str] | None = None,
    ) -> list[DeliveryRecord]:
        """Accepted deliveries, newest first, ties by id descending; ``before``: only those
        after ``(received_at, id)`` in that order (a cursor)."""
        ...

    def rejections(
        self,
        *,
        since: float | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        before: tuple[float, int] | None = None,
    ) -> list[RejectionRecord]:
        """Rejected requests (metadata only), newest first; ``before`` as for deliveries."""
        ...

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery with headers, body and attempt log; a unique id prefix is enough."""
        ...

    def match_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to ``limit`` delivery ids that start with ``prefix``."""
        ...

    def get_rejection(self, rejection_id: int) -> RejectionRecord | None:
        """One rejected request by its number (``r<number>`` in the history)."""
        ...
