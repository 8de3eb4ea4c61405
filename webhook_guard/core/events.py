"""Observers: how metrics (or anything else) hear what the Guard and the worker did.

The core calls ``notify`` at five points: a request arrived, it was rejected (with its reason
code), a delivery was accepted (new or duplicate, with the ack latency), the queue could not take
it (503), and an attempt finished (processed, retrying or dead — for every queue engine, since
they all run ``core.processing.run_attempt``). ``webhook_guard.metrics`` turns these into
Prometheus series; write your own by implementing any of the ``Observer`` methods::

    from webhook_guard.core.events import BaseObserver, add_observer

    class CountRejections(BaseObserver):
        def request_rejected(self, endpoint: str, reason: str) -> None:
            statsd.incr(f"webhooks.rejected.{reason}")

    add_observer(CountRejections())

Observers are process-wide (label by ``endpoint`` if you run several Guards) and are called
synchronously on the request path: keep them fast and non-blocking. An observer that raises is
logged and skipped; it never fails a request or an attempt (secondary work must not).

This module imports only the standard library: the core must not depend on a metrics library.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal, Protocol

__all__ = [
    "AttemptStatus",
    "BaseObserver",
    "Observer",
    "add_observer",
    "notify",
    "notify_store_error",
    "observers",
    "remove_observer",
]

logger = logging.getLogger("webhook_guard.events")

AttemptStatus = Literal["processed", "ignored", "retrying", "dead"]


class Observer(Protocol):
    """What the core reports. Every method must return quickly and should not raise."""

    def request_received(self, endpoint: str) -> None:
        """A request reached the Guard (any method, any outcome)."""

    def request_rejected(self, endpoint: str, reason: str) -> None:
        """A request was refused with ``reason`` (a ``Rejected.code``: 4xx, never stored)."""

    def delivery_accepted(self, endpoint: str, duplicate: bool, seconds: float) -> None:
        """A delivery was answered 200: stored (``duplicate=False``) or found already stored.
        ``seconds`` is the ack latency, from ``receive()`` entry to its ``Outcome``."""

    def attempt_finished(self, endpoint: str, status: AttemptStatus) -> None:
        """A handler attempt ended: ``processed``, ``ignored`` (no handler matched),
        ``retrying`` (will run again) or ``dead``."""

    def queue_unavailable(self, endpoint: str) -> None:
        """The queue could not durably take a verified delivery: the sender got 503."""

    def store_error(self, operation: str, error: str) -> None:
        """The store failed ``operation`` (``consume``, ``heartbeat``, ``record_rejection``)
        for a consumer or a best-effort write; the consumer backs off and goes on. Optional:
        observers written before it was added are simply not told."""


class BaseObserver:
    """An ``Observer`` that ignores everything: subclass it and override what you need."""

    def request_received(self, endpoint: str) -> None:
        """Ignored; override to hear that a request reached the Guard."""
        pass

    def request_rejected(self, endpoint: str, reason: str) -> None:
        """Ignored; override to hear that a request was refused with ``reason``."""
        pass

    def delivery_accepted(self, endpoint: str, duplicate: bool, seconds: float) -> None:
        """Ignored; override to hear that a delivery was answered 200."""
        pass

    def attempt_finished(self, endpoint: str, status: AttemptStatus) -> None:
        """Ignored; override to hear how a handler attempt ended."""
        pass

    def queue_unavailable(self, endpoint: str) -> None:
        """Ignored; override to hear that the store could not take a delivery (503)."""
        pass


# Replaced, never mutated, so ``notify`` iterates a snapshot without taking the lock.
_observers: tuple[Observer, ...] = ()
_lock = threading.Lock()


def add_observer(observer: Observer) -> None:
    """Start reporting to ``observer`` in this process. Adding the same object twice is a no-op."""
    global _observers
    with _lock:
        if not any(existing is observer for existing in _observers):
            _observers = (*_observers, observer)


def remove_observer(observer: Observer) -> None:
    """Stop reporting to ``observer``; an observer that was not added is ignored."""
    global _observers
    with _lock:
        _observers = tuple(existing for existing in _observers if existing is not observer)


def observers() -> tuple[Observer, ...]:
    """The observers currently reported to, in the order they were added."""
    return _observers


def notify_store_error(operation: str, error: BaseException) -> None:
    """Tell the observers that have ``store_error`` (an optional event) that the store failed
    ``operation``."""
    text = f"{type(error).__name__}: {error}"
    for observer in _observers:
        method = getattr(observer, "store_error", None)
        if callable(method):
            try:
                method(operation, text)
            except Exception:
                logger.exception("webhook_guard: observer %r failed (ignored)", observer)


def notify(event: Callable[[Observer], object]) -> None:
    """Call ``event(observer)`` for every observer, e.g. ``notify(lambda o: o.request_received(
    "default"))``. Never raises: a failing observer is logged and the others still run."""
    for observer in _observers:
        try:
            event(observer)
        except Exception:
            logger.exception("webhook_guard: observer %r failed (ignored)", observer)
