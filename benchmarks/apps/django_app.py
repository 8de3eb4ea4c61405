"""Single-file Django bench project (WSGI): ``POST /bare`` and ``POST /naive`` (``_naive.py``) are
views, ``/webhook`` is answered by webhook_guard's middleware, which is the only middleware (no
ORM, no database).

    gunicorn -w 1 -k sync django_app:application     (run from benchmarks/apps)
"""

from __future__ import annotations

from _guard import OK, bench_guard
from _naive import naive_receive
from django.conf import settings

guard = bench_guard()

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="bench-only",
    INSTALLED_APPS=["webhook_guard.adapters.django"],
    MIDDLEWARE=["webhook_guard.adapters.django.WebhookGuardMiddleware"],
    DATABASES={},
    USE_TZ=True,
    WEBHOOK_GUARD={"ENDPOINTS": {"/webhook": guard}},
)

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings)
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def bare(request: HttpRequest) -> HttpResponse:
    request.body  # noqa: B018  (read it, as the webhook path does)
    return HttpResponse(OK, content_type="application/json")


def naive(request: HttpRequest) -> HttpResponse:
    status = naive_receive(request.headers.get("X-CloudAIPilot-Signature"), request.body)
    return HttpResponse(OK, status=status, content_type="application/json")


urlpatterns = [path("bare", bare), path("naive", naive)]
application = get_wsgi_application()
