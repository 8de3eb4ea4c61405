"""One attempt at a delivery, the same for every queue engine: run the handlers, then decide.

Engines differ only in how they carry the result out (ack, retry later, dead-letter); what the
result is — and what is logged — is decided here.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import TYPE_CHECKING

from webhook_guard.core import events
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.records import AttemptResult
from webhook_guard.core.retry import decide

if TYPE_CHECKING:
    from webhook_guard.core.guard import Guard

logger = logging.getLogger("webhook_guard.worker")


__all__ = ["AttemptResult", "HandlerTimeout", "run_attempt", "timed_out"]


class HandlerTimeout(Exception):
    """An attempt's handlers ran past their timeout (what the attempt log shows)."""

# (endpoint, event type) pairs already warned about as unhandled in this process: one warning
# per event type, not one per delivery.
_warned_unhandled: set[tuple[str, str | None]] = set()
_warned_lock = threading.Lock()


def run_attempt(guard: Guard, delivery: Delivery) -> AttemptResult:
    """Run ``guard``'s handlers on ``delivery`` (attempt ``delivery.attempt``) and decide."""
    started = time.perf_counter()
    result = _attempt(guard, delivery)
    if result.status in ("processed", "ignored"):  # retries and dead letters log their own line
        logger.info(
            "delivery %s %s %s %s in %.0f ms, attempt %d",
            delivery.id,
            guard.endpoint,
            delivery.event_type or "-",
            result.status,
            (time.perf_counter() - started) * 1000,
            delivery.attempt,
        )
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
    except BaseException as error:  # SystemExit or KeyboardInterrupt too: it ends the attempt,
        # never the worker (signals reach the worker through its own handlers, not a handler's)
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
    if ran:
        return AttemptResult("processed")
    reason = f"no handler registered for event {delivery.event_type!r}"
    _warn_unhandled_once(guard.endpoint, delivery.event_type)
    return AttemptResult("ignored", error=reason)


def timed_out(guard: Guard, delivery: Delivery, seconds: float) -> AttemptResult:
    """The result of an attempt whose handlers outlived ``seconds``: retried with backoff like
    any failure (dead after the last attempt). The handler's thread is left running."""
    error = HandlerTimeout(f"the handlers ran past their {seconds:g} s timeout")
    decision = decide(error, delivery.attempt, guard.retry_policy)
    if decision.delay is None:
        logger.error("delivery %s dead after attempt %d: %s", delivery.id, delivery.attempt,
                     decision.reason)
        result = AttemptResult("dead", error=decision.reason)
    else:
        logger.warning(
            "delivery %s attempt %d timed out after %g s, retry in %.1fs",
            delivery.id,
            delivery.attempt,
            seconds,
            decision.delay,
        )
        result = AttemptResult("retrying", decision.delay, decision.reason)
    events.notify(lambda observer: observer.attempt_finished(guard.endpoint, result.status))
    return result


def _warn_unhandled_once(endpoint: str, event_type: str | None) -> None:
    """A typo'd ``@guard.on("invoice.payd")`` must be visible, once per event type."""
    with _warned_lock:
        if (endpoint, event_type) in _warned_unhandled:
            return
        _warned_unhandled.add((endpoint, event_type))
    logger.warning(
        "endpoint %r: no handler matches event %r; its deliveries are marked 'ignored' "
        "(webhook-guard history --status ignored; replay them once a handler exists)",
        endpoint,
        event_type,
    )
