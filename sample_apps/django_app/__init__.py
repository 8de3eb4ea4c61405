"""Django sample project: ``POST /webhook`` through webhook_guard's Django middleware.

    WEBHOOK_SECRET=change-me DJANGO_SETTINGS_MODULE=sample_apps.django_app.settings \\
        gunicorn sample_apps.django_app.wsgi:application
    WEBHOOK_SECRET=change-me DJANGO_SETTINGS_MODULE=sample_apps.django_app.settings \\
        uvicorn sample_apps.django_app.asgi:application

(``wsgi.py`` and ``asgi.py`` default DJANGO_SETTINGS_MODULE to these settings.) The environment
it reads is described in ``webhook_guard.demo.sample``; the Guard is
``sample_apps.django_app.webhooks:guard``.
"""
