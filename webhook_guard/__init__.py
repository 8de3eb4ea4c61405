"""webhook_guard: receive webhooks correctly.

Verify the signature over the raw bytes, store the delivery durably, answer 200 at once, and
process it in a worker with retries, dead letters and a history. This package's top level is
framework-free: adapters live in ``webhook_guard.adapters.<framework>``.
"""

from webhook_guard._version import __version__
from webhook_guard.core.config import GuardConfig
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard
from webhook_guard.core.outcome import Outcome
from webhook_guard.core.queue import Enqueued, EnqueueResult, Queue
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.core.schemes import HmacScheme, StandardWebhooksScheme, StripeScheme
from webhook_guard.exceptions import (
    ConfigurationError,
    PermanentFailure,
    QueueUnavailable,
    Rejected,
    Retry,
    WebhookGuardError,
)
from webhook_guard.queues.sqlite import SQLiteQueue

__all__ = [
    "ConfigurationError",
    "Delivery",
    "EnqueueResult",
    "Enqueued",
    "Guard",
    "GuardConfig",
    "HmacScheme",
    "Outcome",
    "PermanentFailure",
    "Queue",
    "QueueUnavailable",
    "Rejected",
    "Retry",
    "RetryPolicy",
    "SQLiteQueue",
    "StandardWebhooksScheme",
    "StripeScheme",
    "WebhookGuardError",
    "__version__",
]
