"""One attempt at a delivery, the same for every queue engine: run the handlers, then decide.

Engines differ only in how they carry the result out (ack, retry later, dead-letter); what the
result is — and what is logged — is decided here.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from webhook_guard.core import events
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.retry import decide

if TYPE_CHECKING:
    from webhook_guard.core.guard import Guard

logger = logging.getLogger("webhook_guard.worker")


@dataclass(frozen=True)
class AttemptResult:
    """How an attempt ended. ``delay`` is set for ``retrying``; ``error`` holds the reason (or,
    for ``processed``, a note such as "no handler registered")."""

    status: Literal["processed", "retrying", "dead"]
    delay: float | None = None
    error: str | None = None
    traceback: str | None = None


def run_attempt(guard: Guard, delivery: Delivery) -> AttemptResult:
    """Run ``guard``'s handlers on ``delivery`` (attempt ``delivery.attempt``) and decide."""
    result = _attempt(guard, delivery)
    # Observers (metrics) hear every attempt's outcome, whichever engine runs it; never raises.
    events.notify(lambda observer: observer.attempt_finished(guard.endpoint, result.status))
    return result


def _attempt(guard: Guard, delivery: Delivery) -> AttemptResult:
    policy = guard.retry_policy
    if delivery.attempt > policy.max_attempts:
        # Every allowed attempt ended with its worker dying (killed, out of memory...).
        reason = f"the worker stopped during each of {policy.max_attempts} attempts"
        logger.error("delivery %s dead: %s", delivery.id, reason)
        return AttemptResult("dead", error=reason)
    try:
        ran = guard.dispatch(delivery)
    except Exception as error:
        decision = decide(error, delivery.attempt, policy)
        trace = traceback.format_exc()
        if decision.delay is None:
            logger.error(
                "delivery %s dead after attempt %d: %s",
                delivery.id,
                delivery.attempt,
                decision.reason,
            )
            return AttemptResult("dead", error=decision.reason, traceback=trace)
        logger.warning(
            "delivery %s attempt %d failed, retry in %.1fs: %s",
            delivery.id,
            delivery.attempt,
            decision.delay,
            decision.reason,
        )
        return AttemptResult("retrying", decision.delay, decision.reason, trace)
    note = None if ran else f"no handler registered for event {delivery.event_type!r}"
    return AttemptResult("processed", error=note)
