"""The Flask sample app on every broker engine, as users run it: gunicorn serves it with
``WEBHOOK_GUARD_QUEUE=<engine URL>``, the engine's own worker CLI consumes in another process,
and ``webhook-guard history`` reads what happened from the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.contract import HTTPTransport, sample_app_env
from tests.queues.engines import procrastinate_schema
from tests.servers import (
    BIN,
    ROOT,
    free_port,
    gunicorn_command,
    processed,
    sample_env,
    serve,
    stop,
    wait_until,
)
from tests.services import require_postgres, require_rabbitmq, require_redis
from webhook_guard.core.schemes import get_scheme

pytestmark = [pytest.mark.e2e, pytest.mark.services]

DELIVERIES = 20
# engine+broker -> broker URL; each engine has its own Redis DB, flushed after each test.
ENGINES = {
    "celery+redis": "redis://127.0.0.1:6379/13",
    "celery+amqp": "amqp://guest:guest@127.0.0.1:5672//",
    "dramatiq+redis": "redis://127.0.0.1:6379/14",
    "dramatiq+amqp": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "procrastinate+postgresql": "postgresql://postgres@127.0.0.1:5432/webhook_guard_procrastinate",
}
PIKA_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"  # the same vhost as above, as pika spells it


def _worker_command(engine: str, queue_name: str) -> list[str]:
    if engine == "procrastinate":
        return [
            *(str(BIN / "procrastinate"), "--app=webhook_guard.queues.procrastinate.app"),
            *("worker", f"--queues={queue_name}", "--concurrency=2"),
        ]
    if engine == "celery":
        return [
            *(str(BIN / "celery"), "-A", "webhook_guard.queues.celery:celery_app", "worker"),
            *("-Q", queue_name, "--concurrency", "2", "--without-mingle", "--without-gossip"),
        ]
    return [
        *(str(BIN / "dramatiq"), "webhook_guard.queues.dramatiq:broker", "--queues", queue_name),
        *("--processes", "1", "--threads", "2"),
    ]


@contextlib.contextmanager
def _broker(name: str, queue_name: str) -> Iterator[str]:
    """The broker URL for ``name``, emptied of this test's queues afterwards."""
    engine, kind = name.split("+")
    pytest.importorskip(engine)
    broker = ENGINES[name]
    if kind == "redis":
        require_redis()
    elif kind == "postgresql":
        require_postgres()
        procrastinate_schema(broker)
    else:
        require_rabbitmq()
    try:
        yield broker
    finally:
        if kind == "postgresql":
            import psycopg

            with psycopg.connect(broker, autocommit=True) as conn:
                conn.execute("DELETE FROM procrastinate_jobs WHERE queue_name = %s", (queue_name,))
        elif kind == "redis":
            import redis

            redis.Redis.from_url(broker).flushdb()
        else:
            import pika

            connection = pika.BlockingConnection(pika.URLParameters(PIKA_URL))
            try:
                channel = connection.channel()
                for queue in (queue_name, f"{queue_name}.DQ", f"{queue_name}.XQ"):
                    channel.queue_delete(queue)
                if engine == "celery":
                    channel.exchange_delete(queue_name)
            finally:
                connection.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ENGINES)
def test_the_flask_sample_app_runs_on_the_engine(name: str, tmp_path: Path) -> None:
    """Every 200 from gunicorn is processed once, byte-exact, by the engine's worker CLI; a
    delivery that fails once is retried; ``webhook-guard history`` shows them all processed."""
    pytest.importorskip("flask")
    engine = name.split("+")[0]
    queue_name = f"wg_e2e_{uuid.uuid4().hex[:12]}"
    with _broker(name, queue_name) as broker:
        env = sample_env(
            tmp_path,
            WEBHOOK_GUARD_QUEUE=f"{engine}+{broker}?queue={queue_name}",
            WEBHOOK_GUARD_APP="sample_apps.flask_app:guard",
        )
        secret = sample_app_env()["WEBHOOK_SECRET"].split(",")[0]
        port = free_port()
        transport = HTTPTransport("127.0.0.1", port)
        bodies = [json.dumps({"event": "e2e", "n": n}).encode() for n in range(DELIVERIES)]
        bodies.append(json.dumps({"event": "e2e.retry", "fail": 1}).encode())

        def send(body: bytes) -> tuple[str, bytes]:
            headers = get_scheme("cloudaipilot").sign(body, secret)
            reply = transport.request("POST", "/webhook", headers, body)
            assert reply.status == 200, reply.body
            return str(reply.json()["id"]), body

        log = tmp_path / "worker.log"
        app = "sample_apps.flask_app:app"
        with serve(gunicorn_command(app, port, workers=2), env, port, tmp_path / "web.log"):
            with ThreadPoolExecutor(8) as pool:
                accepted = dict(pool.map(send, bodies))
            with open(log, "ab") as out:
                worker = subprocess.Popen(
                    _worker_command(engine, queue_name),
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                done = wait_until(lambda: len(processed(tmp_path)) >= len(accepted), limit=90)
                assert done, log.read_text()[-4000:]
            finally:
                stop(worker)
    runs = processed(tmp_path)
    assert sorted(r["id"] for r in runs) == sorted(accepted), "each delivery ran exactly once"
    assert {r["id"]: r["sha256"] for r in runs} == {
        i: hashlib.sha256(b).hexdigest() for i, b in accepted.items()
    }
    command = [str(BIN / "webhook-guard"), "history", "--db", env["WEBHOOK_GUARD_DB"]]
    history = subprocess.run(
        [*command, "--json", "--limit", "100"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in history.stdout.splitlines()]
    assert {row["id"]: row["status"] for row in rows} == dict.fromkeys(accepted, "processed")
    retried = next(row for row in rows if row["event"] == "e2e.retry")
    assert retried["attempts"] == 2
