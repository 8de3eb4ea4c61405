"""The Guard every bench app uses: configured from the environment, worker external.

``WEBHOOK_SECRET``, ``WEBHOOK_GUARD_QUEUE`` (``sqlite:////abs/path.db?durability=process``) and
``WEBHOOK_GUARD_WORKER=external`` (set by ``benchmarks/ack_path.py``): only the ack path runs in
the server. The handler is a no-op; nothing consumes the queue during a run.

Diagnostics only: ``BENCH_NULL_QUEUE=executor`` (or ``inline``) swaps the SQLite queue for one that
stores nothing, so that a run can tell the adapter's own cost from the store's. ``executor`` hands
``aenqueue`` to the default thread pool exactly as ``SQLiteQueue`` does; ``inline`` does not.
It is never durable: no target is judged on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

from webhook_guard import Delivery, Enqueued, EnqueueResult, Guard, GuardConfig
from webhook_guard.core.queue import Rejection

OK = b'{"status": "ok"}'


class NullQueue:
    """Accepts everything, stores nothing (diagnostics only)."""

    def __init__(self, executor: bool) -> None:
        self.executor = executor

    def enqueue(self, delivery: Delivery) -> EnqueueResult:
        return EnqueueResult(Enqueued.NEW, delivery.id)

    async def aenqueue(self, delivery: Delivery) -> EnqueueResult:
        if self.executor:
            return await asyncio.get_running_loop().run_in_executor(None, self.enqueue, delivery)
        return self.enqueue(delivery)

    def record_rejection(self, rejection: Rejection) -> None:
        return None

    async def arecord_rejection(self, rejection: Rejection) -> None:
        return None

    def close(self) -> None:
        return None


def bench_guard() -> Guard:
    config = GuardConfig.from_env()
    null = os.environ.get("BENCH_NULL_QUEUE", "")
    if null:
        # The Guard refuses two queues: the null queue replaces the configured one.
        config = dataclasses.replace(config, queue=None)
        guard = Guard(config=config, queue=NullQueue(executor=null == "executor"))
    else:
        guard = Guard(config=config)
    guard.add_handler(noop)
    return guard


def noop(delivery: Delivery) -> None:
    return None
