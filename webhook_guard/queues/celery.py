"""Celery as the queue engine: ``celery+redis://host:6379/0`` or ``celery+amqp://host:5672//``.

The web side reserves the delivery in the store (dedupe + history), then publishes one task,
``webhook_guard.process``, whose only argument is the JSON envelope. The worker runs::

    WEBHOOK_GUARD_APP=myproject.webhooks:guard \\
        celery -A webhook_guard.queues.celery:celery_app worker -Q webhook_guard

(``-Q`` names the queue of the URL's ``?queue=``; without ``-Q`` the worker consumes it too.)
``celery_app`` is built when first looked up: the Celery app of the Guard named by
``WEBHOOK_GUARD_APP`` (so the worker publishes retries exactly as the web side does), else one
built from ``WEBHOOK_GUARD_QUEUE`` (the same URL as the web app's; the worker then still needs
``WEBHOOK_GUARD_APP`` to find the handlers). URL options: ``?queue=name`` (default
``webhook_guard``), ``?store=redis://host:6379/1`` (default: SQLite at ``WEBHOOK_GUARD_DB``).

Retries and dead letters are ours (``process_envelope`` republishes with its delay), so
Celery's ``autoretry``/``max_retries`` stay unused. A task waiting for its countdown stays
unacked in a worker until due: keep ``RetryPolicy.cap_seconds`` below Redis's
``visibility_timeout`` (2 h here; it is also how long a dead worker's task waits before Redis
hands it out again) and below RabbitMQ's ``consumer_timeout`` (30 min by default).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import celery
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "webhook_guard.queues.celery needs Celery: pip install 'webhook-guard[celery]'"
    ) from error

from webhook_guard.core.store import DeliveryStore
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable
from webhook_guard.queues.broker import BrokerQueue, process_envelope, worker_queue
from webhook_guard.stores import open_store

__all__ = ["TASK_NAME", "CeleryQueue", "from_url"]

logger = logging.getLogger("webhook_guard.queues")

TASK_NAME = "webhook_guard.process"
QUEUE_NAME = "webhook_guard"
# A broker that refuses answers 503 at once; one that accepts but hangs, within a few seconds.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0  # above kombu's 1-second BRPOP, which the worker's Redis reads wait for
# A task waiting for its countdown stays unacked; Redis redelivers it after this long.
VISIBILITY_TIMEOUT = 2 * 3600
# When the worker cannot run a delivery now (store down, no Guard for it), try again this late.
REDELIVER_SECONDS = 10
# One quick retry revives a pooled connection the broker closed while it sat idle.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}


class CeleryQueue(BrokerQueue):
    """Deliveries carried by Celery; dedupe and history in ``store``."""

    engine = "celery"

    def __init__(self, broker_url: str, store: DeliveryStore, *, queue_name: str = QUEUE_NAME):
        super().__init__(store)
        self.broker_url = broker_url
        self.queue_name = queue_name
        self.app: Any = make_app(broker_url, queue_name)

    def __repr__(self) -> str:
        return f"<CeleryQueue {_redacted(self.broker_url)} queue={self.queue_name!r}>"

    def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        """Send the envelope as a Celery task, due ``delay`` seconds from now."""
        try:
            self.app.send_task(
                TASK_NAME,
                args=[envelope],
                countdown=delay or None,
                task_id=f"{envelope['id']}:{envelope['attempt']}",
                queue=self.queue_name,
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )
        except Exception as error:
            raise QueueUnavailable(f"{self!r}: {error}") from error

    def close(self) -> None:
        """Close the Celery app's broker connections."""
        self.app.close()


def make_app(broker_url: str, queue_name: str = QUEUE_NAME) -> Any:
    """A Celery app for one broker, with the ``webhook_guard.process`` task registered."""
    app = celery.Celery("webhook_guard", broker=broker_url, set_as_current=False)
    # max_retries=0: connecting to publish fails at once; PUBLISH_RETRY decides what follows.
    transport: dict[str, Any] = {"max_retries": 0}
    if broker_url.startswith(("redis://", "rediss://")):
        transport.update(
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            visibility_timeout=VISIBILITY_TIMEOUT,
        )
    else:  # RabbitMQ confirms: a 200 means the broker has the task, not that it left our socket
        transport.update(confirm_publish=True)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=queue_name,
        worker_prefetch_multiplier=1,
        # A task whose ack cannot reach the broker is redelivered anyway: stop it rather than
        # let it run alongside its redelivered copy (Celery 6's default).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=False,
        broker_connection_timeout=CONNECT_TIMEOUT,
        broker_transport_options=transport,
    )

    def process(task: Any, envelope: dict[str, Any]) -> str:
        try:
            return process_envelope(envelope).status
        except (QueueUnavailable, ConfigurationError) as error:
            # Not the handler's failure: this worker cannot run it now. Keep the delivery.
            logger.error(
                "delivery %s: %s; again in %ss", envelope.get("id"), error, REDELIVER_SECONDS
            )
            raise task.retry(exc=error, countdown=REDELIVER_SECONDS) from None

    # max_retries=None on the task itself: Celery reads retry(max_retries=None) as "3".
    app.task(name=TASK_NAME, bind=True, shared=False, max_retries=None)(process)
    return app


def from_url(url: str) -> CeleryQueue:
    """``celery+redis://host:6379/0[?queue=name][&store=redis://host:6379/1]``."""
    if not url.startswith("celery+"):
        raise ConfigurationError("a Celery queue URL starts with celery+redis:// or celery+amqp://")
    parts = urlsplit(url[len("celery+") :])
    options = dict(parse_qsl(parts.query))
    queue_name = options.pop("queue", QUEUE_NAME)
    store = open_store(options.pop("store", None))
    broker_url = urlunsplit(parts._replace(query=urlencode(options)))
    return CeleryQueue(broker_url, store, queue_name=queue_name)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


_worker_app: Any = None


def __getattr__(name: str) -> Any:
    """``celery_app``, built on first lookup: importing this module connects to nothing."""
    global _worker_app
    if name != "celery_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _worker_app is None:
        _worker_app = _app_for_worker()
    return _worker_app


def _app_for_worker() -> Any:
    return worker_queue(CeleryQueue, from_url, "celery_app").app
