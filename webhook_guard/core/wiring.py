"""The one place that turns a queue or store setting into an object.

``open_queue(url)``: ``None`` (``WEBHOOK_GUARD_DB`` or ``./webhook_guard.db``), a path, or
``sqlite:///relative.db`` / ``sqlite:////absolute.db`` with an optional ``?durability=process``;
broker engines ``celery+redis://host:6379/0``, ``celery+amqp://guest:guest@host:5672//``,
``rq://host:6379/0``, ``dramatiq+redis://...``, ``dramatiq+amqp://...``, ``arq://host:6379/0``,
``procrastinate+postgresql://user@host:5432/db``, ``django-tasks://<TASKS backend alias>``.
``postgresql://user@host:5432/db`` (also ``postgres://``; options ``?schema=`` and
``?pool_size=``) is queue and store at once, shared by every host.
``open_store(url)``: a broker queue's ``?store=``: ``redis://host:6379/1``,
``postgresql://user@host:5432/db``, else the SQLite file at ``url``, ``WEBHOOK_GUARD_DB`` or
``./webhook_guard.db``.

Backends are named here by module, as entry points would name them, and imported only when a
URL names them: the core depends on no backend, and no engine is imported unless it is used.
One SQLite file (and one PostgreSQL URL) gets one queue object per process (while a Guard uses
it), so every Guard on it shares its group commit or connection pool, and its consumer.
"""

from __future__ import annotations

import importlib
import os
import threading
import weakref
from typing import Any
from urllib.parse import parse_qs, urlsplit

from webhook_guard.core.config import DEFAULT_DB_PATH
from webhook_guard.core.queue import Queue
from webhook_guard.core.store import DeliveryStore
from webhook_guard.exceptions import ConfigurationError

__all__ = ["ENGINES", "is_postgres_url", "open_postgres", "open_queue", "open_sqlite", "open_store"]

SQLITE_MODULE = "webhook_guard.queues.sqlite"
POSTGRES_MODULE = "webhook_guard.queues.postgres"
POSTGRES_SCHEMES = ("postgresql", "postgres")
REDIS_STORE_MODULE = "webhook_guard.stores.redis"
# URL scheme (before any "+") -> module with ``from_url(url) -> Queue``.
ENGINES = {
    "celery": "webhook_guard.queues.celery",
    "rq": "webhook_guard.queues.rq",
    "dramatiq": "webhook_guard.queues.dramatiq",
    "arq": "webhook_guard.queues.arq",
    "procrastinate": "webhook_guard.queues.procrastinate",
    "django-tasks": "webhook_guard.queues.django_tasks",
}
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

_sqlite_lock = threading.Lock()
_postgres_lock = threading.Lock()
# Weak: a queue (and its connections) lives as long as a Guard uses it, so an app-factory test
# suite with a database per test does not keep every old file open.
_sqlite_queues: weakref.WeakValueDictionary[tuple[str, str], Any] = weakref.WeakValueDictionary()
_postgres_queues: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def open_queue(url: str | None = None) -> Queue:
    """The queue a setting names. Opening is lazy: nothing touches the disk until first use."""
    if not url:
        return open_sqlite(default_db_path())
    if "://" not in url:
        return open_sqlite(url)
    parts = urlsplit(url)
    engine = parts.scheme.split("+", 1)[0]
    if engine in ENGINES:
        queue: Queue = importlib.import_module(ENGINES[engine]).from_url(url)
        return queue
    if parts.scheme in POSTGRES_SCHEMES:
        return open_postgres(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(
            f"queue URL scheme {parts.scheme!r} is not supported; use sqlite:///path.db, "
            f"postgresql://user@host:5432/db or one of {', '.join(ENGINES)}"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigurationError(f"queue URL {url!r} names no database file")
    durability = parse_qs(parts.query).get("durability", ["power"])[0]
    if durability not in ("power", "process"):
        raise ConfigurationError("durability must be 'power' or 'process' in the queue URL")
    return open_sqlite(path, durability)


def open_sqlite(path: str, durability: str = "power") -> Queue:
    """This process's queue object for the SQLite file at ``path`` (one per file).

    Raises ``ConfigurationError`` at once when the file's directory does not exist: a Guard
    that booted would answer every delivery 503 (senders retrying until they give up)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"the directory of the webhook database {path!r} does not exist ({directory}): "
            f"create it (mkdir -p {directory}) or point WEBHOOK_GUARD_DB / queue= at a file in "
            "an existing directory (sqlite:////abs/path.db is absolute: four slashes; "
            "sqlite:///name.db is relative to the working directory)"
        )
    key = (os.path.realpath(path), durability)
    with _sqlite_lock:
        queue = _sqlite_queues.get(key)
        if queue is None:
            queue = importlib.import_module(SQLITE_MODULE).SQLiteQueue(
                path, durability=durability
            )
            _sqlite_queues[key] = queue
    result: Queue = queue
    return result


def open_postgres(url: str) -> Queue:
    """This process's queue object for the PostgreSQL URL ``url`` (one per URL); nothing
    connects until first use."""
    with _postgres_lock:
        queue = _postgres_queues.get(url)
        if queue is None:
            queue = importlib.import_module(POSTGRES_MODULE).PostgresQueue(url)
            _postgres_queues[url] = queue
    result: Queue = queue
    return result


def is_postgres_url(url: str | None) -> bool:
    """True for ``postgresql://`` and ``postgres://`` URLs."""
    return bool(url) and urlsplit(url or "").scheme in POSTGRES_SCHEMES


def open_store(url: str | None = None) -> DeliveryStore:
    """The store ``url`` names; nothing connects until first use."""
    if url and url.startswith(REDIS_SCHEMES):
        store: DeliveryStore = importlib.import_module(REDIS_STORE_MODULE).RedisStore.from_url(url)
        return store
    usage = (
        f"store={url!r}: use redis://host:6379/1, postgresql://user@host:5432/db or a SQLite path"
    )
    if url and "://" in url and not url.startswith("sqlite://") and not is_postgres_url(url):
        raise ConfigurationError(usage)
    queue = open_queue(url or default_db_path())
    if not isinstance(queue, DeliveryStore):
        raise ConfigurationError(usage)
    return queue


def default_db_path() -> str:
    """``WEBHOOK_GUARD_DB``, else ``./webhook_guard.db``."""
    return os.environ.get("WEBHOOK_GUARD_DB") or DEFAULT_DB_PATH
