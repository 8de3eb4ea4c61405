"""Dramatiq as the queue engine: ``dramatiq+redis://host:6379/0`` or ``dramatiq+amqp://host:5672``.

The web side reserves the delivery in the store (dedupe + history), then sends one message to
the actor ``webhook_guard_process`` with the JSON envelope. The worker runs::

    WEBHOOK_GUARD_APP=myproject.webhooks:guard \\
        dramatiq webhook_guard.queues.dramatiq:broker --queues webhook_guard

``broker`` is built when first looked up: the broker of the Guard named by
``WEBHOOK_GUARD_APP`` (so the worker publishes retries exactly as the web side does), else one
built from ``WEBHOOK_GUARD_QUEUE`` (the same URL as the web app's; the worker then still needs
``WEBHOOK_GUARD_APP`` to find the handlers). URL options: ``?queue=name`` (default
``webhook_guard``), ``?store=redis://host:6379/1`` (default: SQLite at ``WEBHOOK_GUARD_DB``).

Each queue object has its own broker and declares the actor on it, never on Dramatiq's global
broker: an actor binds to a broker when it is declared. Retries and dead letters are ours
(``max_retries=0``; ``process_envelope`` republishes with its delay). Dramatiq's ``TimeLimit``
middleware (10 minutes by default) still interrupts a handler that runs longer.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import dramatiq
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "webhook_guard.queues.dramatiq needs Dramatiq: pip install 'webhook-guard[dramatiq]'"
    ) from error

from webhook_guard.core.store import DeliveryStore
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable
from webhook_guard.queues.broker import BrokerQueue, process_envelope, worker_queue
from webhook_guard.stores import open_store

__all__ = ["ACTOR_NAME", "DramatiqQueue", "from_url"]

logger = logging.getLogger("webhook_guard.queues")

ACTOR_NAME = "webhook_guard_process"
QUEUE_NAME = "webhook_guard"
# A broker that refuses answers 503 at once; one that accepts but hangs, within a few seconds.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
# pika connection settings for a bounded connect; a URL that sets one keeps its own.
PIKA_OPTIONS = {
    "connection_attempts": "1",
    "retry_delay": "0",
    "socket_timeout": str(CONNECT_TIMEOUT),
    "stack_timeout": str(2 * CONNECT_TIMEOUT),
    "blocked_connection_timeout": "5",
}
# When the worker cannot run a delivery now (store down, no Guard for it), try again this late.
REDELIVER_SECONDS = 10


class DramatiqQueue(BrokerQueue):
    """Deliveries carried by Dramatiq; dedupe and history in ``store``."""

    engine = "dramatiq"

    def __init__(self, broker: Any, store: DeliveryStore, *, queue_name: str = QUEUE_NAME):
        super().__init__(store)
        self.broker = broker
        self.queue_name = queue_name
        self.actor = make_actor(broker, queue_name)

    def __repr__(self) -> str:
        return f"<DramatiqQueue {type(self.broker).__name__} queue={self.queue_name!r}>"

    def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        """Send the envelope as a Dramatiq message, delayed by ``delay`` seconds."""
        try:
            self.actor.send_with_options(args=(envelope,), delay=int(delay * 1000) or None)
        except Exception as error:
            raise QueueUnavailable(f"{self!r}: {error}") from error

    def close(self) -> None:
        """Close the broker's connections."""
        self.broker.close()


def make_actor(broker: Any, queue_name: str = QUEUE_NAME) -> Any:
    """Declare the ``webhook_guard_process`` actor on ``broker`` (not on the global broker)."""

    def webhook_guard_process(envelope: dict[str, Any]) -> None:
        try:
            process_envelope(envelope)
        except (QueueUnavailable, ConfigurationError) as error:
            # Not the handler's failure: this worker cannot run it now. Keep the delivery.
            logger.error(
                "delivery %s: %s; again in %ss", envelope.get("id"), error, REDELIVER_SECONDS
            )
            actor.send_with_options(args=(envelope,), delay=REDELIVER_SECONDS * 1000)

    declare = dramatiq.actor(
        actor_name=ACTOR_NAME, queue_name=queue_name, broker=broker, max_retries=0
    )
    actor: Any = declare(webhook_guard_process)
    return actor


def make_broker(url: str) -> Any:
    """A Redis or RabbitMQ broker for ``url`` (``redis://`` or ``amqp://``), connect bounded."""
    if url.startswith(("redis://", "rediss://")):
        import redis
        from dramatiq.brokers import redis as redis_brokers
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One immediate retry revives a pooled connection that Redis closed meanwhile; a
        # timeout is not retried, so a hung Redis costs one SOCKET_TIMEOUT, not two.
        revive = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            retry=revive,
        )
        redis_broker: Any = redis_brokers.RedisBroker  # untyped in dramatiq
        return redis_broker(client=client)
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        parts = urlsplit(url)
        options = {**PIKA_OPTIONS, **dict(parse_qsl(parts.query))}
        # Confirms: a 200 means RabbitMQ has the message, not that it left our socket.
        return RabbitmqBroker(
            url=urlunsplit(parts._replace(query=urlencode(options))), confirm_delivery=True
        )
    scheme = urlsplit(url).scheme
    raise ConfigurationError(f"a dramatiq+ URL names a redis:// or amqp:// broker, not {scheme}://")


def from_url(url: str) -> DramatiqQueue:
    """``dramatiq+redis://host:6379/0[?queue=name][&store=redis://host:6379/1]``."""
    if not url.startswith("dramatiq+"):
        raise ConfigurationError("a Dramatiq queue URL starts with dramatiq+redis:// or +amqp://")
    parts = urlsplit(url[len("dramatiq+") :])
    options = dict(parse_qsl(parts.query))
    queue_name = options.pop("queue", QUEUE_NAME)
    store = open_store(options.pop("store", None))
    broker = make_broker(urlunsplit(parts._replace(query=urlencode(options))))
    return DramatiqQueue(broker, store, queue_name=queue_name)


_worker_broker: Any = None


def __getattr__(name: str) -> Any:
    """``broker``, built on first lookup: importing this module connects to nothing."""
    global _worker_broker
    if name != "broker":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _worker_broker is None:
        _worker_broker = _broker_for_worker()
    return _worker_broker


def _broker_for_worker() -> Any:
    return worker_queue(DramatiqQueue, from_url, "broker").broker
