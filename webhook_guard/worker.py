"""``Worker``: consume a store's deliveries in this thread (``webhook-guard worker``).

The consumer lives in ``webhook_guard.core.consumer``; this module keeps the public name where
users and the CLI import it from.
"""

from __future__ import annotations

from webhook_guard.core.consumer import EmbeddedConsumer, Worker

__all__ = ["EmbeddedConsumer", "Worker"]
