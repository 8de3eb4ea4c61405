"""Minimal settings: no database; the webhook path is answered by WebhookGuardMiddleware."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-sample-only-change-me")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "webhook_guard.adapters.django",
    "django.contrib.contenttypes",
    "django.contrib.auth",
]

MIDDLEWARE = [
    # First: it answers /webhook itself, before CSRF, sessions or auth see the request.
    "webhook_guard.adapters.django.WebhookGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "sample_apps.django_app.urls"
WSGI_APPLICATION = "sample_apps.django_app.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True

WEBHOOK_GUARD = {"ENDPOINTS": {"/webhook": "sample_apps.django_app.webhooks:guard"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"webhook_guard": {"handlers": ["console"], "level": "INFO"}},
}
