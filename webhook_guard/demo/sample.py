"""What every sample app shares: a Guard configured from the environment and the sample handler.

The sample-app contract (DESIGN.md): ``WEBHOOK_SECRET`` (required; several comma-separated),
``WEBHOOK_SCHEME``, ``WEBHOOK_GUARD_DB``, ``WEBHOOK_GUARD_QUEUE``, ``WEBHOOK_GUARD_WORKER``
(``external`` leaves handlers to ``webhook-guard worker``). When ``SAMPLE_PROCESSED_LOG`` is set,
the handler appends one JSON line per successful run; a body with ``"fail": N`` raises on its first
N attempts and ``"fail": "always"`` dead-letters; ``"slow": S`` sleeps S seconds in its first
attempt (for tests that kill a worker mid-handler); ``"raise": "SystemExit"`` (or
``KeyboardInterrupt``, ``BaseException``) raises it and ``"hang": true`` never returns, in the
first attempt; ``"crash": "segfault"`` kills the process in its first attempt. Retries are quick
so that a demo stays short.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from typing import Any

from webhook_guard.core.config import GuardConfig
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard
from webhook_guard.core.retry import RetryPolicy

# First retry within about 2 s; dead after the 4th failed attempt.
SAMPLE_RETRY = RetryPolicy(max_attempts=4, base_seconds=1.0, factor=2.0, cap_seconds=2.0)
# Short, so that a worker killed mid-handler gives its delivery back quickly in the crash tests.
SAMPLE_LEASE_SECONDS = 3.0


class SampleFailure(RuntimeError):
    """Raised on purpose by the sample handler for bodies that ask for it."""


def sample_guard(environ: dict[str, str] | None = None) -> Guard:
    """A Guard from the sample-app environment, with the sample handler registered."""
    env = dict(os.environ if environ is None else environ)
    config = GuardConfig.from_env(env)
    guard = Guard(
        config=GuardConfig(
            secrets=config.secrets,
            scheme=config.scheme,
            queue=config.queue,
            endpoint=config.endpoint,
            max_body_bytes=config.max_body_bytes,
            worker=config.worker,
            retry=SAMPLE_RETRY,
            lease_seconds=float(env.get("WEBHOOK_GUARD_LEASE_SECONDS", SAMPLE_LEASE_SECONDS)),
            handler_timeout=config.handler_timeout,
        )
    )
    guard.add_handler(handle_sample_delivery)
    return guard


def handle_sample_delivery(delivery: Delivery) -> None:
    """The sample handler: fail on request, else log the processed delivery."""
    payload = _json_object(delivery.body)
    slow = payload.get("slow")
    if isinstance(slow, (int, float)) and delivery.attempt == 1:
        time.sleep(slow)
    if delivery.attempt == 1:
        _misbehave_once(payload)
    fail = payload.get("fail")
    if fail == "always" or (isinstance(fail, int) and delivery.attempt <= fail):
        raise SampleFailure(f"asked to fail (fail={fail!r}, attempt {delivery.attempt})")
    log_path = os.environ.get("SAMPLE_PROCESSED_LOG")
    if log_path:
        line = json.dumps(
            {
                "id": delivery.id,
                "event": delivery.event_type,
                "sha256": hashlib.sha256(delivery.body).hexdigest(),
            }
        )
        # O_APPEND: several processes may write; each line lands whole.
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


# What a body's "raise" asks the first attempt to raise: the exceptions that end a thread.
_RAISABLE: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "BaseException": BaseException,
}


def _misbehave_once(payload: dict[str, Any]) -> None:
    """``"raise": "SystemExit"`` (or ``KeyboardInterrupt``, ``BaseException``) raises it,
    ``"hang": true`` never returns and ``"crash": "segfault"`` kills the process: faults a
    worker must survive (tests/reliability)."""
    raised = _RAISABLE.get(str(payload.get("raise")))
    if raised is not None:
        raise raised("raised on purpose by the sample handler")
    if payload.get("hang") is True:
        threading.Event().wait()
    if payload.get("crash") == "segfault":  # the whole process dies, as a C extension's crash
        os.kill(os.getpid(), signal.SIGSEGV)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
