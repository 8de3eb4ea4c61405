"""Queue backends. Each engine module imports its engine itself; this package imports none.

Which backend a URL names is decided in one place, ``webhook_guard.core.wiring`` (re-exported
here as ``open_queue``). Broker engines keep their dedupe and history in a store: the SQLite
file at ``WEBHOOK_GUARD_DB`` (one host) unless ``?store=redis://host:6379/1`` names a shared one.
"""

from __future__ import annotations

from webhook_guard.core.wiring import ENGINES, open_queue
from webhook_guard.queues.sqlite import SQLiteQueue

__all__ = ["ENGINES", "SQLiteQueue", "open_queue"]
