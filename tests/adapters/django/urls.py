"""The test URLconf: sync and async views on non-webhook paths, to see pass-through.

``/sync`` and ``/async`` are CSRF-protected; ``/echo/sync`` and ``/echo/async`` are exempt
(``csrf_exempt = True`` set directly: Django 4.2's decorator breaks async views).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path


def sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "sync", "method": request.method, "body": request.body.decode()})


async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "async", "method": request.method, "body": request.body.decode()})


def echo_sync(request: HttpRequest) -> JsonResponse:
    return sync_view(request)


async def echo_async(request: HttpRequest) -> JsonResponse:
    return await async_view(request)


echo_sync.csrf_exempt = True  # type: ignore[attr-defined]
echo_async.csrf_exempt = True  # type: ignore[attr-defined]

urlpatterns = [
    path("sync", sync_view),
    path("async", async_view),
    path("echo/sync", echo_sync),
    path("echo/async", echo_async),
]
