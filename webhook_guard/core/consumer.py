"""The consumer: claims deliveries from a queue this package consumes and runs their handlers.

One consumer per store, not per Guard (the store is what Guards share): it claims only
deliveries of the endpoints it serves and runs each with the handlers of the Guard whose
endpoint recorded it. A failed attempt is retried with backoff or dead-lettered
(``core.retry.decide``); every attempt is recorded in the history.

- ``Worker(*guards)`` consumes in the calling thread (``webhook-guard worker``, tests).
- ``EmbeddedConsumer``: one daemon thread per process and store, serving every attached Guard
  whose ``worker`` is ``"embedded"``; started by the first request or the framework's startup
  hook (never at import, so nothing runs before a gunicorn ``--preload`` fork), pid-checked and
  replaced when its thread died.

This module imports only the core.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from webhook_guard.core import events, registry
from webhook_guard.core.processing import run_attempt, timed_out
from webhook_guard.core.queue import ConsumableQueue, store_key
from webhook_guard.core.records import AttemptResult, Claimed
from webhook_guard.exceptions import ConfigurationError

if TYPE_CHECKING:
    from webhook_guard.core.guard import Guard

__all__ = ["EmbeddedConsumer", "Worker", "embedded_consumer", "is_consumable"]

logger = logging.getLogger("webhook_guard.worker")

# Idle polling backs off to this; another process's enqueue is noticed within it.
MAX_IDLE_POLL_SECONDS = 0.5
MIN_IDLE_POLL_SECONDS = 0.02
# A storage error (locked, read-only, corrupt, deleted) backs the consumer off up to this long;
# it never ends it.
MAX_ERROR_BACKOFF_SECONDS = 10.0
HOUSEKEEPING_EVERY_SECONDS = 60.0
# A consumer records that it is alive this often (``replay`` and the docs read it); one missed
# twice means it is gone.
PRESENCE_EVERY_SECONDS = 5.0
# A Guard that went away between a claim and its dispatch: its delivery comes back this soon.
ORPHAN_RETRY_SECONDS = 1.0
# Handler threads left behind by timed-out attempts that may still be running, per worker: at
# this many the worker stops claiming (and says so) until some of them finish.
MAX_STUCK_HANDLERS = 4


def is_consumable(queue: object) -> bool:
    """True for queues this package consumes itself (claim/finish), False for brokers."""
    return isinstance(queue, ConsumableQueue)


class Worker:
    """Processes the deliveries of the given Guards' endpoints on their (one) store.

    Args:
        guards: the Guards to serve; they must share one store.
        lease_seconds: how long a claim lasts without a heartbeat (default: the shortest of the
            Guards' ``lease_seconds``); a worker that dies holding one gives the delivery back
            after this long. Heartbeats extend it while a handler runs.
    """

    def __init__(self, *guards: Guard, lease_seconds: float | None = None) -> None:
        if not guards:
            raise ConfigurationError("a Worker needs at least one Guard to serve")
        queue = guards[0].queue
        if not isinstance(queue, ConsumableQueue):
            raise ConfigurationError(
                f"{guards[0]!r} uses {queue!r}: the webhook_guard worker consumes the embedded "
                "SQLite queue; run the engine's own worker for broker queues"
            )
        key = store_key(queue)
        for guard in guards[1:]:
            if store_key(guard.queue) != key:
                raise ConfigurationError(
                    f"{guards[0]!r} and {guard!r} use different stores: run one worker per store"
                )
        served: dict[str, Guard] = {}
        for guard in guards:
            if served.get(guard.endpoint, guard) is not guard:
                raise ConfigurationError(f"two Guards serve endpoint {guard.endpoint!r}")
            served[guard.endpoint] = guard
        if lease_seconds is None:
            lease_seconds = min(g.config.lease_seconds for g in guards)
        if lease_seconds <= 0:
            raise ConfigurationError("lease_seconds must be positive")
        self.queue: ConsumableQueue = queue
        self.lease_seconds = lease_seconds
        self._served = served
        self._last_housekeeping = 0.0
        self._last_presence = 0.0
        self._id = uuid.uuid4().hex
        self._runners = threading.local()
        self._abandoned: list[_AttemptThread] = []

    def guards(self) -> Mapping[str, Guard]:
        """The Guards this worker serves, by endpoint."""
        return self._served

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; the delivery in hand is finished first. Storage errors
        of any kind back off and go on: only ``stop`` ends this loop."""
        idle = MIN_IDLE_POLL_SECONDS
        failures = 0
        while not stop.is_set():
            try:
                self._presence()
                worked = self.run_once()
                self._housekeeping()
                failures = 0
            except Exception as error:
                failures += 1
                wait = min(MAX_ERROR_BACKOFF_SECONDS, 0.5 * 2 ** min(failures - 1, 5))
                logger.error("worker: queue error, retrying in %.1f s: %s", wait, error)
                events.notify_store_error("consume", error)
                stop.wait(wait)
                continue
            if worked:
                idle = MIN_IDLE_POLL_SECONDS
                continue
            wait = idle
            try:
                due = self.queue.next_due_in(self.guards().keys())
            except Exception:
                due = None
            if due is not None:
                wait = min(wait, max(due, MIN_IDLE_POLL_SECONDS))
            # An enqueue in this process wakes us at once; other processes' within ``idle``.
            if self.queue.enqueued.wait(wait):
                self.queue.enqueued.clear()
            idle = min(idle * 2, MAX_IDLE_POLL_SECONDS)

    def run_once(self) -> bool:
        """Claim and process one due delivery of the served endpoints; False if none was due."""
        endpoints = self.guards().keys()
        if not endpoints or self._too_many_stuck():
            return False
        claimed = self.queue.claim(self.lease_seconds, endpoints)
        if claimed is None:
            return False
        self.process(claimed)
        return True

    def drain(self, timeout: float = 30.0) -> int:
        """Process until nothing is due or queued (retries included), or ``timeout`` passes."""
        done = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once():
                done += 1
                continue
            due = self.queue.next_due_in(self.guards().keys())
            if due is None:
                break
            time.sleep(min(max(due, 0.01), max(0.0, deadline - time.monotonic())))
        return done

    def process(self, claimed: Claimed) -> None:
        """Run one claimed delivery with its endpoint's Guard and record how it ended."""
        guard = self.guards().get(claimed.delivery.endpoint)
        if guard is None:  # the Guard went away after the claim: give the delivery back
            reason = f"no Guard serves endpoint {claimed.delivery.endpoint!r} in this process"
            self.queue.finish(claimed, AttemptResult("retrying", ORPHAN_RETRY_SECONDS, reason))
            return
        delivery = claimed.delivery
        timeout = guard.attempt_timeout(delivery.event_type)
        beat = _Heartbeat(self.queue, claimed, self.lease_seconds)
        try:
            runner = self._runner()
            finished, outcome = runner.run(lambda: run_attempt(guard, delivery), timeout)
            if not finished:
                self._abandon(runner)
                result = timed_out(guard, delivery, timeout)
            elif outcome is None:  # run_attempt itself failed (logged): try again soon
                error = "the attempt failed outside its handlers (see the worker's log)"
                result = AttemptResult("retrying", ORPHAN_RETRY_SECONDS, error)
            else:
                result = outcome
        finally:
            beat.stop()
        if not self.queue.finish(claimed, result):
            logger.warning(
                "delivery %s: lease lost before its result was recorded; another worker runs it",
                claimed.delivery.id,
            )

    def _runner(self) -> _AttemptThread:
        """This consumer thread's handler thread (each attempt runs there, under a timeout)."""
        runner: _AttemptThread | None = getattr(self._runners, "current", None)
        if runner is None:
            runner = self._runners.current = _AttemptThread()
        return runner

    def _abandon(self, runner: _AttemptThread) -> None:
        """Leave a stuck handler thread behind (Python cannot stop a thread); the next attempt
        gets a new one."""
        runner.retire()
        self._runners.current = None
        self._abandoned = [t for t in self._abandoned if t.alive] + [runner]

    def _too_many_stuck(self) -> bool:
        self._abandoned = [t for t in self._abandoned if t.alive]
        if len(self._abandoned) < MAX_STUCK_HANDLERS:
            return False
        logger.error(
            "worker: %d handlers are stuck past their timeout; not claiming until one returns",
            len(self._abandoned),
        )
        return True

    def _presence(self) -> None:
        now = time.monotonic()
        if now - self._last_presence < PRESENCE_EVERY_SECONDS:
            return
        self._last_presence = now
        seen = getattr(self.queue, "consumer_seen", None)
        if callable(seen):
            seen(self._id, list(self.guards()))

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping < HOUSEKEEPING_EVERY_SECONDS:
            return
        self._last_housekeeping = now
        self.queue.housekeeping()


class _AttemptThread:
    """A daemon thread that runs the attempts handed to it, so that the consumer can stop
    waiting for one that outlives its timeout."""

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[tuple[Callable[[], AttemptResult], _Box] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(
            target=self._loop, daemon=True, name="webhook-guard-handler"
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the thread runs (a retired one ends once its stuck handler returns)."""
        return self._thread.is_alive()

    def run(
        self, attempt: Callable[[], AttemptResult], timeout: float
    ) -> tuple[bool, AttemptResult | None]:
        """Run ``attempt`` there; (True, its result), or (False, None) past ``timeout``."""
        box = _Box()
        self._inbox.put((attempt, box))
        finished = box.done.wait(timeout)
        return finished, box.result

    def retire(self) -> None:
        """End the thread after the attempt in hand (which may never return)."""
        self._inbox.put(None)

    def _loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            attempt, box = item
            try:
                box.result = attempt()
            except BaseException:  # run_attempt contains handlers; this is a last resort
                logger.exception("an attempt failed outside its handlers")
            finally:
                box.done.set()


class _Box:
    """Where an attempt's result waits for the consumer thread."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: AttemptResult | None = None


class _EmbeddedWorker(Worker):
    """A Worker whose Guards are whatever embedded Guards are attached to its store now."""

    def __init__(self, queue: ConsumableQueue, lease_seconds: float) -> None:
        self.queue = queue
        self.lease_seconds = lease_seconds
        self._key = store_key(queue)
        self._served = {}
        self._last_housekeeping = 0.0
        self._last_presence = 0.0
        self._id = uuid.uuid4().hex
        self._runners = threading.local()
        self._abandoned = []

    def guards(self) -> Mapping[str, Guard]:
        return {
            endpoint: guard
            for endpoint, guard in registry.guards_on(self._key).items()
            if guard.config.worker == "embedded"
        }


class _Heartbeat:
    """Extends a claim's lease while its handler runs, so long handlers are not run twice.
    A failed beat (a busy or briefly unusable database) is retried until the lease would
    really have expired."""

    def __init__(self, queue: ConsumableQueue, claimed: Claimed, lease_seconds: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat,
            args=(queue, claimed, lease_seconds),
            daemon=True,
            name="webhook-guard-heartbeat",
        )
        self._thread.start()

    def _beat(self, queue: ConsumableQueue, claimed: Claimed, lease_seconds: float) -> None:
        expires = time.monotonic() + lease_seconds
        interval = lease_seconds / 3
        try:
            while not self._stop.wait(interval):
                try:
                    if not queue.heartbeat(claimed, lease_seconds):
                        return  # another worker owns it now
                    expires = time.monotonic() + lease_seconds
                    interval = lease_seconds / 3
                except Exception as error:
                    events.notify_store_error("heartbeat", error)
                    left = expires - time.monotonic()
                    if left <= 0:
                        logger.error("heartbeat for %s gave up: %s", claimed.delivery.id, error)
                        return
                    logger.warning(
                        "heartbeat for %s failed, retrying: %s", claimed.delivery.id, error
                    )
                    interval = min(lease_seconds / 3, max(0.05, left / 4))
        finally:
            close = getattr(queue, "close", None)
            if callable(close):
                close()  # this thread's connection

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class EmbeddedConsumer:
    """One consumer thread per process and store, started on demand (pid-checked, so it is
    started afresh in a forked child, and replaced if its thread died)."""

    def __init__(self, queue: ConsumableQueue) -> None:
        self.queue = queue
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True when this process's consumer thread is alive."""
        return self._alive()

    def _alive(self) -> bool:
        thread = self._thread
        return self._pid == os.getpid() and thread is not None and thread.is_alive()

    def ensure_started(self, lease_seconds: float) -> None:
        """Start the consumer thread unless it runs in this process already."""
        if self._alive():
            return
        with self._lock:
            if self._alive():
                return
            if self._pid == os.getpid() and self._thread is not None:
                logger.error(
                    "the embedded consumer thread of %r died; starting a new one", self.queue
                )
            worker = _EmbeddedWorker(self.queue, lease_seconds)
            self._stop = threading.Event()
            # Daemon: a blocked worker must never keep a web process alive past its shutdown.
            self._thread = threading.Thread(
                target=worker.run, args=(self._stop,), name="webhook-guard-consumer", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop this process's consumer after the delivery in hand (waits up to ``timeout``)."""
        thread = self._thread
        if self._pid == os.getpid() and thread is not None:
            self._stop.set()
            self.queue.enqueued.set()  # wake it from its idle wait
            thread.join(timeout)
            self._pid = None


_consumers: dict[str, EmbeddedConsumer] = {}
_consumers_lock = threading.Lock()


def embedded_consumer(queue: ConsumableQueue) -> EmbeddedConsumer:
    """The one embedded consumer of ``queue``'s store in this process."""
    key = store_key(queue)
    with _consumers_lock:
        consumer = _consumers.get(key)
        if consumer is None:
            consumer = _consumers[key] = EmbeddedConsumer(queue)
        return consumer
