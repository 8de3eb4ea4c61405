"""Flask sample app: ``POST /webhook`` through webhook_guard's Flask adapter.

    WEBHOOK_SECRET=change-me gunicorn sample_apps.flask_app:app

It is the app ``webhook-guard demo`` serves, kept inside the package so that the demo works from
any directory. Your own app looks like this::

    from flask import Flask
    from webhook_guard import Guard
    from webhook_guard.adapters.flask import webhook

    app = Flask(__name__)
    guard = Guard(os.environ["WEBHOOK_SECRET"])

    @app.route("/webhook")
    @webhook(guard)
    def on_delivery(delivery):      # runs in the worker, after the 200
        print(delivery.event_type, delivery.json())
"""

from webhook_guard.demo.flask_app import app, guard

__all__ = ["app", "guard"]
