"""Flask bench app: ``POST /bare`` (reads the body, answers 200), ``POST /naive`` (the
hand-written receiver of ``_naive.py``) and ``/webhook`` through webhook_guard's Flask decorator,
in the same app.

    gunicorn -w 1 -k gthread --threads 4 flask_app:app     (run from benchmarks/apps)
"""

from __future__ import annotations

from _guard import OK, bench_guard, noop
from _naive import naive_receive
from flask import Flask, Response, request

from webhook_guard.adapters.flask import webhook

app = Flask(__name__)
guard = bench_guard()


@app.post("/bare")
def bare() -> Response:
    request.get_data(cache=False)
    return Response(OK, status=200, mimetype="application/json")


@app.post("/naive")
def naive() -> Response:
    body = request.get_data(cache=False)
    status = naive_receive(request.headers.get("X-CloudAIPilot-Signature"), body)
    return Response(OK, status=status, mimetype="application/json")


app.add_url_rule("/webhook", "webhook", webhook(guard)(noop))
