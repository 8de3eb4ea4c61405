"""What every broker-backed queue (Celery, RQ, Dramatiq, arq) shares.

The request side: ``store.reserve`` (dedupe + history, atomically) -> publish the JSON envelope
-> 200; a failed publish releases the reservation and answers 503. The worker side:
``process_envelope`` runs one attempt with the Guard's handlers and our retry policy, publishes
the next attempt with its delay itself, and reports every attempt to the store. Engines only
say how to publish and how to call ``process_envelope``: their own retry and dead-letter
machinery stays unused, so the policy and the history are the same on every engine.

This module imports no engine.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from webhook_guard.core import registry
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.processing import run_attempt
from webhook_guard.core.queue import Enqueued, EnqueueResult, Rejection
from webhook_guard.core.records import AttemptResult
from webhook_guard.core.store import DeliveryStore, HistoryReader
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable

if TYPE_CHECKING:
    from webhook_guard.core.guard import Guard

logger = logging.getLogger("webhook_guard.queues")

# The engine worker finds the Guard of an envelope's endpoint in ``core.registry`` (a Guard
# attaches itself when it is built); a worker process that has not imported the app imports
# WEBHOOK_GUARD_APP ("module:attribute") first.
APP_ENV = "WEBHOOK_GUARD_APP"
QUEUE_ENV = "WEBHOOK_GUARD_QUEUE"
Q = TypeVar("Q", bound="BrokerQueue")


class BrokerQueue(ABC):
    """A queue whose messages live in a broker, with dedupe and history in ``store``."""

    engine: str = "broker"

    def __init__(self, store: DeliveryStore) -> None:
        self.store = store

    @abstractmethod
    def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        """Hand ``envelope`` to the broker, to be processed ``delay`` seconds from now.
        Must give up quickly (bounded connect timeout) when the broker is down."""

    @property
    def store_key(self) -> str:
        """Every broker queue shares one endpoint namespace: engine workers find a delivery's
        Guard by its endpoint alone."""
        return registry.BROKERS

    def enqueue(self, delivery: Delivery) -> EnqueueResult:
        """Reserve in the store (dedupe + history), then publish; a failed publish releases the
        reservation and raises QueueUnavailable."""
        result = self.store.reserve(delivery, self.engine)
        if result.status is Enqueued.DUPLICATE:
            return result
        try:
            self.publish(delivery.to_envelope())
        except Exception as error:
            try:
                self.store.release(delivery)
            except Exception:
                logger.exception("could not release %s after a failed publish", delivery.id)
            raise QueueUnavailable(f"{self.engine}: publishing failed: {error}") from error
        return result

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult:
        """``enqueue`` off the event loop, in the request's context: the store's wait ends by
        the request's deadline (``core.deadline``), executor queueing included."""
        return await asyncio.to_thread(self.enqueue, delivery)  # to_thread copies the context

    def record_rejection(self, rejection: Rejection) -> None:
        """Keep a refused request's metadata in the store's history."""
        self.store.record_rejection(rejection)

    async def arecord_rejection(self, rejection: Rejection) -> None:
        """``record_rejection`` for the event loop."""
        await self.store.arecord_rejection(rejection)

    def replay(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> int:
        """Publish stored deliveries again as attempt 1; return how many. Selected by status,
        only dead ones are taken: a queued or retrying delivery already has a message waiting
        in the broker, and replaying it would run it twice."""
        statuses = tuple(s for s in statuses if s not in ("queued", "retrying", "processing"))
        if delivery_ids is None and not statuses:
            return 0
        ids = self.store.mark_replayed(delivery_ids, statuses=statuses)
        for count, delivery_id in enumerate(ids):
            delivery = self.store.load(delivery_id)
            try:
                if delivery is not None:
                    self.publish(delivery.to_envelope())
            except Exception as error:
                # Marked queued but never published: put them back as dead, still replayable.
                reason = f"replay could not be published: {error}"
                for unpublished in ids[count:]:
                    self.store.attempt_finished(unpublished, 0, AttemptResult("dead", error=reason))
                raise QueueUnavailable(
                    f"{self.engine}: replayed {count} of {len(ids)}: {error}"
                ) from error
        return len(ids)

    def requeue_abandoned(self, older_than: float, *, endpoint: str | None = None) -> list[str]:
        """Publish again, as their next attempt, the deliveries whose attempt started more than
        ``older_than`` seconds ago and never ended: their worker died mid-handler (``kill -9``,
        a lost host) on an engine that never runs a started task again (django-tasks-db; on
        procrastinate, ``retry_stalled_jobs``). Returns their ids. The dead attempt is recorded
        as failed ("abandoned"), so the next sweep leaves the delivery alone.

        ``older_than`` must exceed the Guard's ``handler_timeout`` (300 s by default): a live
        worker records every attempt, a timed-out one included, within it, so only an attempt
        whose worker is gone is that old. Run it from cron or a periodic task, on the store of
        one engine (or name the ``endpoint``)."""
        if not isinstance(self.store, HistoryReader):
            raise ConfigurationError(f"{self.store!r} cannot list deliveries")
        cutoff = time.time() - older_than
        abandoned: list[str] = []
        before: tuple[float, str] | None = None
        while True:
            page = self.store.deliveries(
                statuses=("processing",), endpoint=endpoint, limit=200, before=before
            )
            for record in page:
                if record.updated_at >= cutoff:
                    continue
                envelope = record.delivery().to_envelope()
                # Published before it is recorded, as process_envelope does: a crash in between
                # runs it twice rather than never.
                self.publish({**envelope, "attempt": record.attempts + 1})
                reason = f"abandoned: no result {older_than:g} s after the attempt started"
                self.store.attempt_finished(
                    record.id, record.attempts, AttemptResult("retrying", delay=0.0, error=reason)
                )
                logger.warning("delivery %s: %s; published again", record.id, reason)
                abandoned.append(record.id)
            if len(page) < 200:
                return abandoned
            before = (page[-1].received_at, page[-1].id)

    def close(self) -> None:  # noqa: B027 - engines without a connection to close keep this
        """Close the broker connection, if the engine holds one."""


def guard_for(endpoint: str) -> Guard:
    """The Guard that handles ``endpoint``'s deliveries in this worker process."""
    guard = registry.guard_for(registry.BROKERS, endpoint)
    if guard is None and os.environ.get(APP_ENV):
        _import_app(os.environ[APP_ENV])
        guard = registry.guard_for(registry.BROKERS, endpoint)
    if guard is None:
        raise ConfigurationError(
            f"no Guard for endpoint {endpoint!r} in this worker: import your app first or set "
            f"{APP_ENV}=module:guard"
        )
    return guard


def worker_queue(kind: type[Q], from_url: Callable[[str], Q], what: str) -> Q:
    """The queue an engine's own worker command consumes: the Guard's at WEBHOOK_GUARD_APP
    (so retries are published exactly as the web side publishes), else one built from
    WEBHOOK_GUARD_QUEUE. ``what`` names the attribute the worker command loads."""
    target = os.environ.get(APP_ENV)
    if target:
        module, _, attribute = target.partition(":")
        _cwd_importable()
        guard = getattr(importlib.import_module(module), attribute or "guard")
        if not isinstance(guard.queue, kind):
            raise ConfigurationError(
                f"{APP_ENV}={target}: {guard.queue!r} is not a {kind.engine} queue"
            )
        return guard.queue
    url = os.environ.get(QUEUE_ENV, "")
    if not url.startswith(kind.engine + "+"):
        raise ConfigurationError(
            f"{what} needs {APP_ENV}=module:guard or {QUEUE_ENV}={kind.engine}+redis://host:6379/0"
        )
    return from_url(url)


def _import_app(target: str) -> None:
    module_name, _, _attribute = target.partition(":")
    _cwd_importable()
    importlib.import_module(module_name)


def _cwd_importable() -> None:
    """Put the current directory first on sys.path, once, as ``python -m`` and the RQ, Dramatiq
    and arq commands do: ``celery -A ... worker`` runs from a console script whose sys.path
    lacks it, so the user's Guard module beside them failed with ModuleNotFoundError unless
    PYTHONPATH was set."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def process_envelope(envelope: dict[str, Any]) -> AttemptResult:
    """Run one attempt of the delivery in ``envelope``: what every engine's task calls."""
    delivery = Delivery.from_envelope(envelope)
    guard = guard_for(delivery.endpoint)
    queue = guard.queue
    if not isinstance(queue, BrokerQueue):
        raise ConfigurationError(f"{guard!r} does not use a broker queue")
    queue.store.attempt_started(delivery.id, delivery.attempt)
    result = run_attempt(guard, delivery)
    # The next attempt is published before this one is recorded: a crash in between runs it
    # twice rather than never. The store fences by attempt number, so if the next attempt
    # starts first, this late record does not overwrite its status.
    if result.status == "retrying":
        queue.publish({**envelope, "attempt": delivery.attempt + 1}, result.delay or 0.0)
    queue.store.attempt_finished(delivery.id, delivery.attempt, result)
    return result
