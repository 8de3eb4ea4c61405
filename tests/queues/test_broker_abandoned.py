"""``BrokerQueue.requeue_abandoned`` on the SQLite store, with a broker that only records what
is published (the broker plays no part: the store decides what was abandoned). The real
engines' workers killed mid-handler are in ``test_django_tasks.py``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from webhook_guard.core.delivery import Delivery, new_delivery_id
from webhook_guard.core.records import AttemptResult
from webhook_guard.queues.broker import BrokerQueue
from webhook_guard.queues.sqlite import SQLiteQueue


class Recording(BrokerQueue):
    engine = "recording"

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.published: list[dict[str, Any]] = []

    def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        self.published.append(envelope)


def delivery(endpoint: str = "ep") -> Delivery:
    return Delivery(
        id=new_delivery_id(),
        endpoint=endpoint,
        body=b'{"n": 1}',
        dedupe_key=None,
        received_at=time.time(),
        event_type="e",
    )


def test_only_old_unfinished_attempts_are_published_again_once(tmp_path: Path) -> None:
    """An attempt started long enough ago and never ended is published as the next attempt
    and recorded as failed; a recent one, a finished one, another endpoint's (when one is
    named) and a second sweep publish nothing."""
    store = SQLiteQueue(str(tmp_path / "store.db"))
    queue = Recording(store)
    stalled, recent, finished, other = delivery(), delivery(), delivery(), delivery("other")
    for d in (stalled, recent, finished, other):
        queue.enqueue(d)
        store.attempt_started(d.id, 1)
    store.attempt_finished(finished.id, 1, AttemptResult("processed"))
    queue.published.clear()
    time.sleep(1.2)
    store.attempt_started(recent.id, 2)  # its attempt 2 just started
    assert queue.requeue_abandoned(1.0, endpoint="ep") == [stalled.id]
    assert [(e["id"], e["attempt"]) for e in queue.published] == [(stalled.id, 2)]
    record = store.get(stalled.id)
    assert record is not None and record.status == "retrying"
    assert [a.outcome for a in record.attempt_log] == ["failed"]
    assert "abandoned" in (record.attempt_log[0].error or "")
    assert queue.requeue_abandoned(1.0, endpoint="ep") == []
    assert queue.requeue_abandoned(1.0) == [other.id]
    store.close()
