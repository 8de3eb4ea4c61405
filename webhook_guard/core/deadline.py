"""The request deadline: the ``time.monotonic()`` by which the request in hand must be answered.

``request.answer`` sets it when an adapter hands over a request (``Guard.request_deadline``
seconds from then) and clears it when the answer is ready. Whatever the request waits on
underneath reads it here instead of taking a parameter through every layer: the body reader
(a body still arriving at the deadline is refused with 408) and the stores (SQLite's group
commit, a PostgreSQL statement: ``store_deadline``; a store that cannot take the write in time
answers 503). A context variable is per thread and
per asyncio task, so concurrent requests never see each other's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = [
    "MIN_STORE_WAIT_SECONDS",
    "current_deadline",
    "deadline_after",
    "remaining",
    "store_deadline",
]

# A request whose deadline has (nearly) passed still waits this long for a free store: a body
# that took the request's whole budget to arrive still gets its 200 from a store that is free.
MIN_STORE_WAIT_SECONDS = 0.1

_deadline: ContextVar[float | None] = ContextVar("webhook_guard_request_deadline", default=None)


def current_deadline() -> float | None:
    """The ``time.monotonic()`` by which the current request must be answered; None outside a
    request (a worker, the CLI, a test calling the queue directly)."""
    return _deadline.get()


def remaining(deadline: float | None = None) -> float | None:
    """Seconds left before ``deadline`` (default: the current request's), at least 0; None when
    there is no deadline."""
    if deadline is None:
        deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def store_deadline(budget: float) -> float:
    """The ``time.monotonic()`` by which a store's write must be done: ``budget`` seconds (the
    store's own limit) from now, or the current request's deadline if sooner, but at least
    ``MIN_STORE_WAIT_SECONDS`` from now. Outside a request, just the budget."""
    now = time.monotonic()
    deadline = now + budget
    request = _deadline.get()
    if request is not None:
        deadline = max(min(deadline, request), now + MIN_STORE_WAIT_SECONDS)
    return deadline


@contextmanager
def deadline_after(seconds: float) -> Iterator[float]:
    """Within the block, the current request must be answered ``seconds`` from now (or by an
    earlier deadline already set); yields the deadline."""
    deadline = time.monotonic() + seconds
    outer = _deadline.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)
