"""Flask bench app: ``POST /bare`` (reads the body, answers 200) and ``/webhook`` through
webhook_guard's Flask decorator, in the same app.

    gunicorn -w 1 -k gthread --threads 4 flask_app:app     (run from benchmarks/apps)
"""

from __future__ import annotations

from _guard import OK, bench_guard, noop
from flask import Flask, Response, request

from webhook_guard.adapters.flask import webhook

app = Flask(__name__)
guard = bench_guard()


@app.post("/bare")
def bare() -> Response:
    request.get_data(cache=False)
    return Response(OK, status=200, mimetype="application/json")


app.add_url_rule("/webhook", "webhook", webhook(guard)(noop))
