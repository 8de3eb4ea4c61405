"""Django's tasks framework as the queue engine: ``django-tasks://<backend alias>[?queue=name]
[&store=redis://host:6379/1]``, e.g. ``django-tasks://default``.

The web side reserves the delivery in the store (dedupe + history), then enqueues one task,
``webhook_guard.queues.django_tasks.process``, whose only argument is the JSON envelope, on the
``TASKS`` backend the URL names (the database backend of ``django-tasks-db``, or any other the
project configured). Django 6's built-in ``django.tasks`` is used when present, else the
``django-tasks`` backport. Retries are ours: ``process_envelope`` enqueues the next attempt
with ``run_after`` = now + its delay, so the backend must support deferred tasks
(``supports_defer``; the database backend does, the immediate and dummy ones do not run a
retry later: a delayed retry on them fails with ``QueueUnavailable`` saying so). The project's
own worker runs the tasks, e.g. the database backend's::

    WEBHOOK_GUARD_APP=myproject.webhooks:guard python manage.py db_worker --backend default

The task itself fails only when the worker cannot run the delivery now (no Guard for its
endpoint, the store down): it enqueues itself again ``REDELIVER_SECONDS`` later, at most
``REDELIVER_ATTEMPTS`` times (the tasks framework has no retries of its own). A worker killed
mid-task leaves it running for good (django-tasks-db never runs a started task again):
``DjangoTasksQueue.requeue_abandoned`` (``BrokerQueue``'s) publishes such deliveries again from
our store.

Django's settings must be configured (``DJANGO_SETTINGS_MODULE``) before this module is
imported, and ``TASKS`` must have a ``default`` backend (the task is declared on it, then
enqueued ``using`` the URL's alias). The store defaults to SQLite at ``WEBHOOK_GUARD_DB`` (one
host); ``?store=postgresql://...`` or ``?store=redis://...`` shares it across machines.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

try:
    import django  # noqa: F401 - only to say clearly what is missing
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "webhook_guard.queues.django_tasks needs Django and its tasks framework: "
        "pip install 'webhook-guard[django-tasks]'"
    ) from error

from webhook_guard.core.store import DeliveryStore
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable
from webhook_guard.queues.broker import BrokerQueue, process_envelope
from webhook_guard.stores import open_store

__all__ = [
    "REDELIVER_ATTEMPTS",
    "REDELIVER_SECONDS",
    "DjangoTasksQueue",
    "from_url",
    "process",
    "split_url",
    "tasks_module",
]

logger = logging.getLogger("webhook_guard.queues")

SCHEME = "django-tasks"
# The job itself fails only when this worker cannot run the delivery now (store down, no Guard
# for its endpoint): it is enqueued again this much later, this many times.
REDELIVER_SECONDS = 10.0
REDELIVER_ATTEMPTS = 30


def tasks_module() -> Any:
    """Django 6's ``django.tasks`` when this Django has it, else the ``django_tasks`` backport."""
    if importlib.util.find_spec("django.tasks") is not None:
        return importlib.import_module("django.tasks")
    try:
        return importlib.import_module("django_tasks")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "webhook_guard.queues.django_tasks needs Django >= 6 or the django-tasks backport: "
            "pip install 'webhook-guard[django-tasks]'"
        ) from error


_tasks = tasks_module()


def _process(context: Any, envelope: dict[str, Any], redelivered: int = 0) -> str:
    try:
        return process_envelope(envelope).status
    except Exception as error:
        if redelivered >= REDELIVER_ATTEMPTS:
            raise
        logger.warning(
            "delivery %s cannot run in this worker now (%s): enqueued again in %ss",
            envelope.get("id"),
            error,
            REDELIVER_SECONDS,
        )
        due = datetime.now(timezone.utc) + timedelta(seconds=REDELIVER_SECONDS)
        # The same task (backend, queue name) as this run, later.
        again = context.task_result.task.using(run_after=due)
        again.enqueue(envelope, redelivered=redelivered + 1)
        raise


_process.__name__ = _process.__qualname__ = "process"  # the task's path names the module's task
# The task the worker runs: one attempt at one delivery (retries are enqueued by
# ``process_envelope``). Declared on the ``default`` backend; enqueued ``using`` the URL's.
process: Any = _tasks.task(takes_context=True)(_process)


def split_url(url: str) -> tuple[str, str | None, str | None]:
    """``django-tasks://alias?queue=q&store=s`` -> (alias, store, queue)."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        raise ConfigurationError(
            f"{parts.scheme}:// is not a Django tasks queue URL: use django-tasks://default"
        )
    alias = parts.netloc or parts.path.strip("/")
    if not alias:
        raise ConfigurationError(f"{url!r} names no TASKS backend: use django-tasks://default")
    options = dict(parse_qsl(parts.query))
    return alias, options.get("store"), options.get("queue")


class DjangoTasksQueue(BrokerQueue):
    """Deliveries carried by Django's tasks framework; dedupe and history in ``store``.

    Args:
        backend: the alias of a backend in Django's ``TASKS`` setting.
        store: where dedupe keys and the history live.
        queue_name: the backend queue the task goes to (the backend's default queue unless
            given; its worker must process it, e.g. ``db_worker --queue-name``).
    """

    engine = SCHEME

    def __init__(
        self, backend: str, store: DeliveryStore, *, queue_name: str | None = None
    ) -> None:
        super().__init__(store)
        self.backend = backend
        self.queue_name = queue_name or str(_tasks.DEFAULT_TASK_QUEUE_NAME)

    def __repr__(self) -> str:
        return f"<DjangoTasksQueue backend={self.backend!r} queue={self.queue_name!r}>"

    def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        """Enqueue the envelope as a task on the backend (``run_after`` when ``delay`` > 0)."""
        try:
            backend = _tasks.task_backends[self.backend]
        except Exception as error:
            raise QueueUnavailable(
                f"django-tasks: no TASKS backend {self.backend!r}: {error}"
            ) from error
        options: dict[str, Any] = {"backend": self.backend, "queue_name": self.queue_name}
        if delay > 0:
            if not getattr(backend, "supports_defer", False):
                raise QueueUnavailable(
                    f"django-tasks: backend {self.backend!r} ({type(backend).__name__}) does "
                    "not support deferred tasks (run_after), which retries with a delay need: "
                    "use one that does, e.g. django_tasks_db.DatabaseBackend"
                )
            options["run_after"] = datetime.now(timezone.utc) + timedelta(seconds=delay)
        for retried in (False, True):
            try:
                process.using(**options).enqueue(envelope)
                return
            except Exception as error:
                # A connection opened before a database restart is dead: enqueue once more on
                # a fresh one, so the restart costs no request its 200 (as the PostgreSQL
                # queue does). A database still down fails again, with its own error.
                if _close_broken_connections() and not retried:
                    continue
                raise QueueUnavailable(f"django-tasks: {self!r}: {error}") from error


def _close_broken_connections() -> bool:
    """After a failed enqueue, drop this thread's unusable database connections, so that the
    next attempt connects afresh once the database is back (Django does it between requests
    only, and a web server outside Django's request cycle, or a worker, never would). True
    when one was dropped."""
    dropped = False
    try:
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block and connection.connection is not None:
                connection.close_if_unusable_or_obsolete()
                dropped = dropped or connection.connection is None
    except Exception:
        logger.debug("could not close database connections", exc_info=True)
    return dropped


def from_url(url: str) -> DjangoTasksQueue:
    """``django-tasks://<backend alias>`` with ``?queue=`` and ``?store=``."""
    alias, store, queue = split_url(url)
    return DjangoTasksQueue(alias, open_store(store), queue_name=queue)
