"""The Django app: registers the system checks. Builds no Guard and opens nothing in ``ready``."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class WebhookGuardConfig(AppConfig):
    """The Django app of webhook_guard: its system checks and ``manage.py webhook_guard_worker``."""
    name = "webhook_guard.adapters.django"
    label = "webhook_guard"
    verbose_name = "Webhook Guard"

    def ready(self) -> None:
        """Register the system checks; builds no Guard and opens nothing (safe before a fork)."""
        from webhook_guard.adapters.django.checks import TAG, check_endpoints, check_middleware

        checks.register(check_middleware, TAG)
        checks.register(check_endpoints, TAG)
