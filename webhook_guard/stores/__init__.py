"""Delivery stores for broker-backed queues: dedupe and history kept apart from the broker.

``open_store(url)`` (from ``webhook_guard.core.wiring``) turns a queue URL's ``?store=`` option
into a store: ``redis://host:6379/1`` (``RedisStore``: one store for every machine), else the
SQLite file at ``url``, ``WEBHOOK_GUARD_DB`` or ``./webhook_guard.db`` (one host).
``engine_url`` splits an engine URL such as
``rq://host:6379/0?queue=hooks&store=redis://host:6379/1`` into its parts.

This package imports no engine; ``webhook_guard.stores.redis`` imports redis-py when named.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from webhook_guard.core.wiring import REDIS_SCHEMES, open_store
from webhook_guard.exceptions import ConfigurationError

__all__ = ["EngineURL", "engine_url", "open_store"]



@dataclass(frozen=True)
class EngineURL:
    """An engine URL taken apart: the Redis URL of the broker, the store, the queue name."""

    broker: str
    store: str | None
    queue: str | None


def engine_url(url: str, engine: str) -> EngineURL:
    """``rq://h:6379/0`` -> ``redis://h:6379/0``; ``rq+rediss://...`` -> ``rediss://...``;
    ``?queue=`` and ``?store=`` are taken out, other options stay with the broker URL."""
    scheme, _, rest = url.partition("://")
    if scheme == engine:
        redis_scheme = "redis"
    elif scheme.startswith(engine + "+"):
        redis_scheme = scheme[len(engine) + 1 :]
    else:
        raise ConfigurationError(f"{url!r} is not a {engine}:// queue URL")
    if redis_scheme + "://" not in REDIS_SCHEMES:
        raise ConfigurationError(f"{url!r}: {engine} runs on redis://, rediss:// or unix://")
    parts = urlsplit(f"{redis_scheme}://{rest}")
    options = dict(parse_qsl(parts.query))
    queue = options.pop("queue", None)
    store = options.pop("store", None)
    broker = urlunsplit(parts._replace(query=urlencode(options)))
    return EngineURL(broker, store, queue)
