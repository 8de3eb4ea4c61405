"""Queue backends. Each engine module imports its engine itself; this package imports none.

``open_queue(url)`` turns a setting into a queue: ``None`` (``WEBHOOK_GUARD_DB`` or
``./webhook_guard.db``), a path, or ``sqlite:///relative.db`` / ``sqlite:////absolute.db`` with
an optional ``?durability=process``. Broker engines: ``celery+redis://host:6379/0``,
``celery+amqp://guest:guest@host:5672//``, ``rq://host:6379/0``, ``dramatiq+redis://...``,
``dramatiq+amqp://...``, ``arq://host:6379/0``; their dedupe and history live in the SQLite store
at ``WEBHOOK_GUARD_DB`` (one host) unless ``?store=redis://host:6379/1`` names a shared one.
"""

from __future__ import annotations

import importlib
import os
from urllib.parse import parse_qs, urlsplit

from webhook_guard.core.config import DEFAULT_DB_PATH
from webhook_guard.core.queue import Queue
from webhook_guard.exceptions import ConfigurationError
from webhook_guard.queues.sqlite import SQLiteQueue

__all__ = ["SQLiteQueue", "open_queue"]

# URL scheme (before any "+") -> module with ``from_url(url) -> BrokerQueue``; imported only
# when named, so that no engine is imported unless it is used.
ENGINES = {
    "celery": "webhook_guard.queues.celery",
    "rq": "webhook_guard.queues.rq",
    "dramatiq": "webhook_guard.queues.dramatiq",
    "arq": "webhook_guard.queues.arq",
}


def open_queue(url: str | None = None) -> Queue:
    """The queue a setting names. Opening is lazy: nothing touches the disk until first use."""
    if not url:
        return SQLiteQueue(os.environ.get("WEBHOOK_GUARD_DB") or DEFAULT_DB_PATH)
    if "://" not in url:
        return SQLiteQueue(url)
    parts = urlsplit(url)
    engine = parts.scheme.split("+", 1)[0]
    if engine in ENGINES:
        module = importlib.import_module(ENGINES[engine])
        queue: Queue = module.from_url(url)
        return queue
    if parts.scheme != "sqlite":
        raise ConfigurationError(
            f"queue URL scheme {parts.scheme!r} is not supported yet; use sqlite:///path.db"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigurationError(f"queue URL {url!r} names no database file")
    durability = parse_qs(parts.query).get("durability", ["power"])[0]
    if durability not in ("power", "process"):
        raise ConfigurationError("durability must be 'power' or 'process' in the queue URL")
    return SQLiteQueue(path, durability="power" if durability == "power" else "process")
