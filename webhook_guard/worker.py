"""The worker: claims deliveries from the embedded queue and runs the Guard's handlers.

A failed attempt is retried with backoff or dead-lettered (``core.retry.decide``); every attempt
is recorded in the history. The same ``Worker`` runs embedded (a daemon thread per web process,
started on first use, so it survives gunicorn ``--preload`` forks) and standalone
(``webhook-guard worker module:guard``, stopped gracefully by SIGTERM/SIGINT).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from webhook_guard.core.processing import run_attempt
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable
from webhook_guard.queues.sqlite import Claimed, SQLiteQueue

if TYPE_CHECKING:
    from webhook_guard.core.guard import Guard

logger = logging.getLogger("webhook_guard.worker")

# Idle polling backs off to this; another process's enqueue is noticed within it.
MAX_IDLE_POLL_SECONDS = 0.5
MIN_IDLE_POLL_SECONDS = 0.02
HOUSEKEEPING_EVERY_SECONDS = 60.0


class Worker:
    """Processes deliveries of one Guard until told to stop.

    Args:
        guard: whose queue to consume and whose handlers to run.
        lease_seconds: how long a claim lasts without a heartbeat; a worker that dies holding
            one gives the delivery back after this long. Heartbeats extend it while a handler runs.
    """

    def __init__(self, guard: Guard, *, lease_seconds: float | None = None) -> None:
        lease_seconds = guard.config.lease_seconds if lease_seconds is None else lease_seconds
        if not isinstance(guard.queue, SQLiteQueue):
            raise ConfigurationError(
                f"{guard!r} uses {guard.queue!r}: the webhook_guard worker consumes the embedded "
                "SQLite queue; run the engine's own worker for other queues"
            )
        if lease_seconds <= 0:
            raise ConfigurationError("lease_seconds must be positive")
        self.guard = guard
        self.queue: SQLiteQueue = guard.queue
        self.lease_seconds = lease_seconds
        self._last_housekeeping = 0.0

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; the delivery in hand is finished first."""
        idle = MIN_IDLE_POLL_SECONDS
        while not stop.is_set():
            try:
                worked = self.run_once()
                self._housekeeping()
            except QueueUnavailable as error:
                logger.error("worker: queue unavailable, retrying in 1 s: %s", error)
                worked = False
                idle = 1.0
            if worked:
                idle = MIN_IDLE_POLL_SECONDS
                continue
            wait = idle
            try:
                due = self.queue.next_due_in()
            except QueueUnavailable:
                due = None
            if due is not None:
                wait = min(wait, max(due, MIN_IDLE_POLL_SECONDS))
            # An enqueue in this process wakes us at once; other processes' within ``idle``.
            if self.queue.enqueued.wait(wait):
                self.queue.enqueued.clear()
            idle = min(idle * 2, MAX_IDLE_POLL_SECONDS)

    def run_once(self) -> bool:
        """Claim and process one due delivery; False if none was due."""
        claimed = self.queue.claim(self.lease_seconds)
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
            due = self.queue.next_due_in()
            if due is None:
                break
            time.sleep(min(max(due, 0.01), max(0.0, deadline - time.monotonic())))
        return done

    def process(self, claimed: Claimed) -> None:
        beat = _Heartbeat(self.queue, claimed, self.lease_seconds)
        try:
            result = run_attempt(self.guard, claimed.delivery)
        finally:
            beat.stop()
        if result.status == "processed":
            recorded = self.queue.ack(claimed, result.error)
        elif result.status == "retrying":
            recorded = self.queue.retry_later(
                claimed, result.delay or 0.0, result.error or "", result.traceback
            )
        else:
            recorded = self.queue.dead(claimed, result.error or "", result.traceback)
        if not recorded:
            logger.warning(
                "delivery %s: lease lost before its result was recorded; another worker runs it",
                claimed.delivery.id,
            )

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping < HOUSEKEEPING_EVERY_SECONDS:
            return
        self._last_housekeeping = now
        self.queue.purge()
        self.queue.checkpoint()


class _Heartbeat:
    """Extends a claim's lease while its handler runs, so long handlers are not run twice."""

    def __init__(self, queue: SQLiteQueue, claimed: Claimed, lease_seconds: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat,
            args=(queue, claimed, lease_seconds),
            daemon=True,
            name="webhook-guard-heartbeat",
        )
        self._thread.start()

    def _beat(self, queue: SQLiteQueue, claimed: Claimed, lease_seconds: float) -> None:
        try:
            while not self._stop.wait(lease_seconds / 3):
                if not queue.heartbeat(claimed, lease_seconds):
                    return
        except QueueUnavailable as error:
            logger.warning("heartbeat for %s failed: %s", claimed.delivery.id, error)
        finally:
            queue.close()  # this thread's connection

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class EmbeddedRuntime:
    """One worker thread per process, started on first use (pid-guarded, fork-safe)."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            worker = Worker(self.guard)
            self._stop = threading.Event()
            # Daemon: a blocked worker must never keep a web process alive past its shutdown.
            self._thread = threading.Thread(
                target=worker.run, args=(self._stop,), name="webhook-guard-worker", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def stop(self, timeout: float = 5.0) -> None:
        if self._pid == os.getpid() and self._thread is not None:
            self._stop.set()
            if isinstance(self.guard.queue, SQLiteQueue):
                self.guard.queue.enqueued.set()  # wake it from its idle wait
            self._thread.join(timeout)
            self._pid = None
