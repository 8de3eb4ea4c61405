"""The sample Guard: configured from the environment, with the sample handler registered.

Imported on the first request to ``/webhook`` (settings name it by dotted path), and by
``webhook-guard worker sample_apps.django_app.webhooks:guard`` when WEBHOOK_GUARD_WORKER=external.
"""

from __future__ import annotations

from webhook_guard.demo.sample import sample_guard

guard = sample_guard()
