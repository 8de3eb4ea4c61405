"""``GET /`` says what this is; ``/webhook`` never gets here (the middleware answers it)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"app": "webhook_guard Django sample", "webhook": "POST /webhook"})


urlpatterns = [path("", index)]
