"""The Flask sample app (``sample_apps/flask_app.py`` re-exports it; the demo serves it).

Serve: ``WEBHOOK_SECRET=... gunicorn sample_apps.flask_app:app``. The environment it reads is
described in ``webhook_guard.demo.sample``.
"""

from __future__ import annotations

from flask import Flask

from webhook_guard.adapters.flask import make_view
from webhook_guard.demo.sample import sample_guard

guard = sample_guard()
app = Flask(__name__)
# The sample handler is already on the Guard; the view only receives.
app.add_url_rule("/webhook", "webhook", make_view(guard))


@app.get("/")
def index() -> dict[str, str]:
    """What this server is, for a person (or a test) that opens it in a browser."""
    return {"app": "webhook_guard Flask sample", "webhook": "POST /webhook"}
