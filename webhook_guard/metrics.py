"""Prometheus metrics for webhook_guard (the ``metrics`` extra).

::

    from webhook_guard.metrics import install

    metrics = install()              # counters + ack histogram on prometheus_client's REGISTRY
    metrics.track_queue(guard.queue) # queue depth per status, read at scrape time

then expose the registry as usual for your framework (``prometheus_client.make_wsgi_app()``,
``make_asgi_app()``, a Django view: ``docs/metrics.md``). Everything is labelled by the Guard's
``endpoint``. The core reports through ``webhook_guard.core.events``; this module only listens,
and a failure in it is logged, never turned into a failed request.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.metrics_core import GaugeMetricFamily, Metric
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "webhook_guard.metrics needs prometheus_client: pip install 'webhook-guard[metrics]'"
    ) from error

from webhook_guard.core.events import AttemptStatus, add_observer
from webhook_guard.core.records import STATUSES
from webhook_guard.exceptions import ConfigurationError

__all__ = ["ACK_BUCKETS", "PrometheusObserver", "QueueDepthCollector", "install"]

logger = logging.getLogger("webhook_guard.metrics")

DEFAULT_NAMESPACE = "webhook_guard"
# The ack path is one verify plus one fsync'd commit: milliseconds, with a tail that matters
# long before a sender's ~10 s timeout.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CountsSource(Protocol):
    """Anything with ``counts() -> {status: number}``: ``SQLiteQueue``, the Redis store."""

    def counts(self) -> dict[str, int]: ...


class QueueDepthCollector:
    """``<namespace>_queue_depth{queue, status}``, read from each tracked queue at scrape time.

    Every known status is exported (0 when empty) so a dashboard's series never vanish. A queue
    whose ``counts()`` fails is logged and left out of that scrape; the scrape itself goes on.
    """

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.name = f"{namespace}_queue_depth" if namespace else "queue_depth"
        self._queues: dict[str, CountsSource] = {}
        self._lock = threading.Lock()

    def track(self, queue: CountsSource, name: str | None = None) -> None:
        """Export ``queue``'s depth labelled ``queue=name`` (default: its database path)."""
        label = name or _queue_label(queue)
        with self._lock:
            if self._queues.get(label, queue) is not queue:
                raise ConfigurationError(
                    f"a different queue is already tracked as {label!r}: pass name= to tell "
                    "them apart"
                )
            self._queues[label] = queue

    def describe(self) -> Iterable[Metric]:
        # Lets the registry learn the name without calling collect() (and the database).
        """The gauge this collector exports, for registration."""
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        """Read every tracked queue's depth by status, at scrape time."""
        family = self._family()
        with self._lock:
            tracked = list(self._queues.items())
        for label, queue in tracked:
            try:
                counts = queue.counts()
            except Exception:
                logger.warning("webhook_guard: queue depth of %r unavailable", label, exc_info=True)
                continue
            for status in (*STATUSES, *sorted(set(counts) - set(STATUSES))):
                family.add_metric([label, status], counts.get(status, 0))
        return [family]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.name,
            "Deliveries stored in the queue, by status, read at scrape time.",
            labels=["queue", "status"],
        )


class PrometheusObserver:
    """An ``Observer`` that counts what the Guard and the worker do, in Prometheus series.

    Args:
        registry: where the series live; default ``prometheus_client.REGISTRY``.
        namespace: prefix of every series name.
        buckets: the ack-latency histogram's bucket bounds, in seconds.

    Series (with the default namespace):
        ``webhook_guard_requests_received_total{endpoint}``,
        ``webhook_guard_requests_rejected_total{endpoint,reason}``,
        ``webhook_guard_deliveries_accepted_total{endpoint,duplicate}``,
        ``webhook_guard_attempts_total{endpoint,status}`` (processed, ignored, retrying, dead),
        ``webhook_guard_queue_unavailable_total{endpoint}``,
        ``webhook_guard_store_errors_total{operation}``,
        ``webhook_guard_ack_seconds{endpoint}`` (histogram) and, once ``track_queue`` is called,
        ``webhook_guard_queue_depth{queue,status}``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        buckets: Sequence[float] = ACK_BUCKETS,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self.received = Counter(
            "requests_received",
            "Webhook requests that reached the Guard.",
            ["endpoint"],
            namespace=namespace,
            registry=self.registry,
        )
        self.rejected = Counter(
            "requests_rejected",
            "Webhook requests refused (4xx), by reason code.",
            ["endpoint", "reason"],
            namespace=namespace,
            registry=self.registry,
        )
        self.accepted = Counter(
            "deliveries_accepted",
            "Deliveries answered 200: stored (duplicate=false) or already stored (true).",
            ["endpoint", "duplicate"],
            namespace=namespace,
            registry=self.registry,
        )
        self.attempts = Counter(
            "attempts",
            "Handler attempts, by how they ended: processed, ignored, retrying or dead.",
            ["endpoint", "status"],
            namespace=namespace,
            registry=self.registry,
        )
        self.unavailable = Counter(
            "queue_unavailable",
            "Verified deliveries the queue could not take (answered 503 + Retry-After).",
            ["endpoint"],
            namespace=namespace,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "store_errors",
            "Store failures a consumer backed off from, or best-effort writes dropped, by "
            "operation (consume, heartbeat, record_rejection).",
            ["operation"],
            namespace=namespace,
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "ack_seconds",
            "Seconds from receive() entry to the 200 outcome (new and duplicate deliveries).",
            ["endpoint"],
            buckets=buckets,
            namespace=namespace,
            registry=self.registry,
        )
        self.queue_depth = QueueDepthCollector(namespace)
        self.registry.register(self.queue_depth)

    def __repr__(self) -> str:
        return f"<PrometheusObserver namespace={self.namespace!r}>"

    def track_queue(self, queue: CountsSource, name: str | None = None) -> None:
        """Export ``queue``'s depth per status at each scrape (``queue.counts()``)."""
        self.queue_depth.track(queue, name)

    # -- Observer ----------------------------------------------------------------------------

    def request_received(self, endpoint: str) -> None:
        """Count a request (``webhook_guard_requests_received_total``)."""
        self.received.labels(endpoint).inc()

    def request_rejected(self, endpoint: str, reason: str) -> None:
        """Count a rejection by reason (``webhook_guard_requests_rejected_total``)."""
        self.rejected.labels(endpoint, reason).inc()

    def delivery_accepted(self, endpoint: str, duplicate: bool, seconds: float) -> None:
        """Count an accepted delivery and observe its ack latency."""
        self.accepted.labels(endpoint, "true" if duplicate else "false").inc()
        self.ack_seconds.labels(endpoint).observe(seconds)

    def attempt_finished(self, endpoint: str, status: AttemptStatus) -> None:
        """Count a finished attempt by status (``webhook_guard_attempts_total``)."""
        self.attempts.labels(endpoint, status).inc()

    def store_error(self, operation: str, error: str) -> None:
        """Count a store failure by operation (``webhook_guard_store_errors_total``)."""
        self.store_errors.labels(operation=operation).inc()

    def queue_unavailable(self, endpoint: str) -> None:
        """Count a 503 (``webhook_guard_queue_unavailable_total``)."""
        self.unavailable.labels(endpoint).inc()


def install(
    registry: CollectorRegistry | None = None, namespace: str = DEFAULT_NAMESPACE
) -> PrometheusObserver:
    """Create a ``PrometheusObserver`` on ``registry`` and start reporting to it.

    Call it once per process (at import of your app, next to the Guard); a second call on the
    same registry fails with prometheus_client's "Duplicated timeseries". Undo with
    ``webhook_guard.core.events.remove_observer(observer)``.
    """
    observer = PrometheusObserver(registry, namespace)
    add_observer(observer)
    return observer


def _queue_label(queue: CountsSource) -> str:
    # The SQLite path names the queue; never repr() a queue (a broker URL may hold a password).
    path = getattr(queue, "path", None)
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    return type(queue).__name__
