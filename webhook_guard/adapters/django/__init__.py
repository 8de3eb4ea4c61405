"""Django adapter: a middleware that answers webhook paths itself, configured from settings.

::

    INSTALLED_APPS = [..., "webhook_guard.adapters.django"]     # system checks
    MIDDLEWARE = [
        "webhook_guard.adapters.django.WebhookGuardMiddleware",  # first: before CSRF and auth
        "django.middleware.security.SecurityMiddleware",
        ...
    ]
    WEBHOOK_GUARD = {
        "ENDPOINTS": {
            "/webhook": "myproject.webhooks:guard",              # a Guard, by dotted path
            "/hooks/stripe": {"SECRET": env("STRIPE_SECRET"), "SCHEME": "stripe",
                              "HANDLERS": {"invoice.*": "billing.hooks.on_invoice"}},
        },
    }

A request whose ``path_info`` is exactly an endpoint path never reaches the URLconf, CSRF, auth
or any later middleware: its raw bytes are read with the Guard's cap, verified, enqueued durably
and answered per the response contract. Every other request passes through untouched.
"""

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "webhook_guard.adapters.django needs Django: pip install 'webhook-guard[django]'"
    ) from error

from webhook_guard.adapters.django.conf import conf, prepare_worker
from webhook_guard.adapters.django.middleware import WebhookGuardMiddleware

__all__ = ["WebhookGuardMiddleware", "conf", "prepare_worker"]
