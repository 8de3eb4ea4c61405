"""URLconf for the Django mount tests: the dashboard included under ``admin/webhooks/``."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import include, path

urlpatterns = [path("admin/webhooks/", include("webhook_guard.dashboard.django"))]


def header_staff(request: HttpRequest) -> bool:
    """A test AUTHORIZE: staff is whoever sends ``X-Test-Staff: yes``."""
    return request.headers.get("X-Test-Staff") == "yes"
