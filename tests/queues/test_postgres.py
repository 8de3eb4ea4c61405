"""The PostgreSQL queue on a real server (127.0.0.1:5432): dedupe across hosts, SKIP LOCKED
claims, leases and fencing, LISTEN/NOTIFY, an unreachable server, and a Guard end to end.

Each test gets a fresh schema in the ``test`` database, dropped afterwards; two queue objects
on one URL stand for two hosts (each has its own connections and listener)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import postgres_schema, postgres_url, require_postgres
from webhook_guard.core.delivery import Delivery, new_delivery_id
from webhook_guard.core.queue import ConsumableQueue, Enqueued, Rejection
from webhook_guard.core.records import AttemptResult
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.core.store import DeliveryStore
from webhook_guard.exceptions import QueueUnavailable

pytestmark = pytest.mark.services

MakeQueue = Callable[..., Any]


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name, dropped (with its tables) after the test."""
    require_postgres()
    with postgres_schema("pgq") as name:
        yield name


@pytest.fixture
def make_queue(schema: str) -> Iterator[MakeQueue]:
    """Builds queue objects on the test schema (each one is a separate "host")."""
    from webhook_guard.queues.postgres import PostgresQueue

    built: list[Any] = []

    def make(**options: Any) -> Any:
        queue = PostgresQueue(postgres_url(schema), **options)
        built.append(queue)
        return queue

    yield make
    for queue in built:
        queue.dispose()


def _delivery(key: str | None = None, endpoint: str = "ep", body: bytes = b"{}") -> Delivery:
    return Delivery(
        id=new_delivery_id(),
        endpoint=endpoint,
        body=body,
        dedupe_key=key,
        received_at=time.time(),
        event_type="invoice.paid",
        scheme="github",
    )


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_it_is_a_consumable_queue_and_a_store(make_queue: MakeQueue) -> None:
    """PostgresQueue implements Queue, ConsumableQueue and DeliveryStore; the async twins
    work from an event loop (in a thread)."""
    queue = make_queue()
    assert isinstance(queue, ConsumableQueue) and isinstance(queue, DeliveryStore)

    async def from_the_loop() -> Any:
        await queue.arecord_rejection(
            Rejection(time.time(), "ep", "POST", "/x", None, "signature_mismatch", "", 0, None)
        )
        return await queue.aenqueue(_delivery("async"))

    assert asyncio.run(from_the_loop()).status is Enqueued.NEW
    assert len(queue.rejections()) == 1


def test_dedupe_holds_across_two_hosts(make_queue: MakeQueue) -> None:
    """A key accepted through one queue object is a duplicate through another (two hosts)."""
    host_a, host_b = make_queue(), make_queue()
    first = _delivery("evt_1")
    assert host_a.enqueue(first).status is Enqueued.NEW
    again = host_b.enqueue(_delivery("evt_1"))
    assert again.status is Enqueued.DUPLICATE and again.delivery_id == first.id
    assert host_b.enqueue(_delivery("evt_1", endpoint="other")).status is Enqueued.NEW


def test_concurrent_reserves_on_two_hosts_make_exactly_one_new(make_queue: MakeQueue) -> None:
    """Twelve threads over two queue objects race on one key: exactly one NEW."""
    hosts = [make_queue(), make_queue()]
    results: list[Any] = []
    start = threading.Barrier(12)

    def reserve(n: int) -> None:
        start.wait()
        results.append(hosts[n % 2].enqueue(_delivery("race")))

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    new = [r for r in results if r.status is Enqueued.NEW]
    assert len(results) == 12 and len(new) == 1
    assert {r.delivery_id for r in results} == {new[0].delivery_id}
    assert hosts[0].counts() == {"queued": 1}


def test_skip_locked_claims_never_hand_out_one_delivery_twice(make_queue: MakeQueue) -> None:
    """Four threads on two hosts claim 60 deliveries: each exactly once, none lost."""
    hosts = [make_queue(), make_queue()]
    ids = {hosts[0].enqueue(_delivery(f"k{n}")).delivery_id for n in range(60)}
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def consume(n: int) -> None:
        queue = hosts[n % 2]
        start.wait()
        while (claim := queue.claim(30.0, ["ep"])) is not None:
            with lock:
                claimed.append(claim.delivery.id)
            assert queue.finish(claim, AttemptResult("processed"))

    threads = [threading.Thread(target=consume, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)
    assert hosts[0].counts() == {"processed": 60}


def test_claims_follow_endpoints_and_due_time(make_queue: MakeQueue) -> None:
    """A worker takes only its endpoints; a retry waits for its time; next_due_in says when."""
    queue = make_queue()
    queue.enqueue(_delivery(endpoint="github"))
    assert queue.claim(30.0, ["orders"]) is None and queue.claim(30.0, []) is None
    assert queue.next_due_in(["orders"]) is None and queue.next_due_in(["github"]) == 0.0
    claim = queue.claim(30.0, ["github"])
    assert claim is not None and claim.delivery.attempt == 1
    assert queue.finish(claim, AttemptResult("retrying", 60.0, "boom"))
    assert queue.claim(30.0, None) is None
    due = queue.next_due_in(None)
    assert due is not None and 50 < due <= 60
    record = queue.get(claim.delivery.id)
    assert (record.status, record.last_error) == ("retrying", "boom")


def test_an_expired_lease_is_reclaimed_and_the_stale_worker_is_fenced(
    make_queue: MakeQueue,
) -> None:
    """A lease that runs out goes to another worker; the first one's heartbeat and finish
    return False and change nothing; the history shows the lost attempt."""
    host_a, host_b = make_queue(), make_queue()
    delivery = _delivery("k")
    host_a.enqueue(delivery)
    stale = host_a.claim(0.2, ["ep"])
    assert stale is not None and host_b.claim(30.0, ["ep"]) is None
    time.sleep(0.3)
    fresh = host_b.claim(30.0, ["ep"])
    assert fresh is not None and fresh.delivery.id == delivery.id and fresh.delivery.attempt == 2
    assert host_a.heartbeat(stale, 30.0) is False
    assert host_a.finish(stale, AttemptResult("dead", error="stale")) is False
    assert host_b.heartbeat(fresh, 30.0) is True
    assert host_b.finish(fresh, AttemptResult("processed")) is True
    record = host_a.get(delivery.id)
    assert (record.status, record.attempts, record.last_error) == ("processed", 2, None)
    assert [a.outcome for a in record.attempt_log] == ["lost", "processed"]


def test_notify_wakes_an_idle_consumer_on_another_host(make_queue: MakeQueue) -> None:
    """The consumer's `enqueued` event is set by LISTEN/NOTIFY when another host enqueues."""
    consumer_host, web_host = make_queue(), make_queue()
    event = consumer_host.enqueued  # starts the listener
    assert event.wait(5.0)  # set once listening (a wake-up to check for missed deliveries)
    event.clear()
    web_host.enqueue(_delivery())
    assert event.wait(5.0)
    event.clear()
    web_host.reserve(_delivery(), "celery")  # a broker carries it: no wake-up
    assert not event.wait(0.3)


def test_an_unreachable_server_is_queue_unavailable_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every call against a closed port raises QueueUnavailable quickly, naming the store
    without its password; record_rejection drops (and counts) instead of raising; the
    listener logs its failure, password blanked."""
    from tests.servers import free_port
    from webhook_guard.queues.postgres import PostgresQueue

    queue = PostgresQueue(f"postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/db")
    caplog.set_level(logging.WARNING, logger="webhook_guard")
    queue.enqueued  # noqa: B018 - starts the listener, which fails to connect
    wait_for(lambda: any("listening" in r.getMessage() for r in caplog.records), 5.0)
    queue.dispose()
    assert "s3cret" not in repr(queue)
    started = time.monotonic()
    for call in (
        lambda: queue.enqueue(_delivery("k")),
        lambda: queue.claim(30.0, ["ep"]),
        lambda: queue.next_due_in(["ep"]),
        lambda: queue.deliveries(),
        lambda: queue.get("x"),
        lambda: queue.mark_replayed(statuses=("dead",)),
    ):
        with pytest.raises(QueueUnavailable, match="postgresql store") as raised:
            call()
        assert "s3cret" not in str(raised.value)
    queue.record_rejection(
        Rejection(time.time(), "ep", "POST", "/x", None, "signature_mismatch", "", 0, None)
    )
    assert queue.rejections_dropped == 1
    assert time.monotonic() - started < 5
    assert caplog.records and all("s3cret" not in r.getMessage() for r in caplog.records)


def test_it_recovers_when_its_connections_are_killed(make_queue: MakeQueue) -> None:
    """Server-side termination of every connection (as a restart does) costs no call: the
    next one reconnects."""
    import psycopg

    from tests.services import POSTGRES_ADMIN_URL

    queue = make_queue()
    assert queue.enqueue(_delivery("a")).status is Enqueued.NEW
    # Only this queue's session (one: calls in turn share it); others may use the server.
    own = queue._run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (own,)).fetchone()[0]
    assert queue.enqueue(_delivery("b")).status is Enqueued.NEW
    assert len(queue.deliveries()) == 2


def test_the_schema_is_versioned_and_opened_without_ddl_again(
    make_queue: MakeQueue, schema: str
) -> None:
    """The library creates its tables and records version 1; a second process finds them."""
    import psycopg

    from tests.services import POSTGRES_ADMIN_URL
    from webhook_guard.queues.postgres import SCHEMA_VERSION

    make_queue().deliveries()
    make_queue().deliveries()
    with psycopg.connect(POSTGRES_ADMIN_URL) as conn:
        rows = conn.execute(f'SELECT version FROM "{schema}".schema_version').fetchall()
    assert rows == [(SCHEMA_VERSION,)]


def test_urls_open_one_queue_per_dsn(schema: str) -> None:
    """open_queue/open_store take postgresql:// and postgres://, one object per URL."""
    from webhook_guard.core.wiring import open_queue, open_store
    from webhook_guard.queues.postgres import PostgresQueue

    url = postgres_url(schema, pool_size="3")
    queue = open_queue(url)
    assert isinstance(queue, PostgresQueue) and queue is open_queue(url)
    assert (queue.schema, queue.pool_size) == (schema, 3)
    assert open_store(url) is queue
    other = open_queue(url.replace("postgresql://", "postgres://"))
    assert isinstance(other, PostgresQueue) and other.store_key == queue.store_key


def test_a_guard_on_postgres_processes_with_the_embedded_consumer(schema: str) -> None:
    """Guard(queue="postgresql://...") answers 200, a duplicate is not run again, and the
    embedded consumer runs the handler (retries included) without polling delays."""
    from tests.contract import SECRET, contract_guard
    from webhook_guard.testing import sign_request

    url = postgres_url(schema)
    calls: list[tuple[str, int]] = []
    guard = contract_guard(
        "cloudaipilot",
        url,
        endpoint="pg-e2e",
        worker="embedded",
        clock=time.time,
        retry=RetryPolicy(max_attempts=3, base_seconds=0.01, cap_seconds=0.05),
    )

    @guard.on()
    def handle(delivery: Delivery) -> None:
        calls.append((delivery.id, delivery.attempt))
        if json.loads(delivery.body).get("fail") and delivery.attempt == 1:
            raise RuntimeError("first attempt fails")

    try:
        answers = []
        for payload in ({"event": "a"}, {"event": "b", "fail": 1}, {"event": "a"}):
            body = json.dumps(payload).encode()
            out = guard.receive("POST", "/x", sign_request("cloudaipilot", SECRET, body), body)
            assert out.status == 200, out.body
            answers.append(json.loads(out.body))
        assert [a["status"] for a in answers] == ["ok", "ok", "duplicate"]
        assert answers[2]["id"] == answers[0]["id"]
        queue: Any = guard.queue
        wait_for(lambda: queue.counts() == {"processed": 2})
        assert sorted(calls) == sorted(
            [(answers[0]["id"], 1), (answers[1]["id"], 1), (answers[1]["id"], 2)]
        )
        record = queue.get(answers[1]["id"])
        assert [a.outcome for a in record.attempt_log] == ["failed", "processed"]
    finally:
        guard.stop_worker()
        guard.close()
        guard.queue.dispose()  # type: ignore[attr-defined]


def test_the_cli_reads_replays_and_purges_a_postgres_store(
    make_queue: MakeQueue, schema: str
) -> None:
    """`history`, `show`, `replay` and `purge` take --store postgresql://... (as subprocesses)."""
    import os
    import subprocess
    import sys

    from tests.servers import ROOT

    queue = make_queue()
    done, dead = _delivery("done"), _delivery("dead")
    for delivery, result in ((done, AttemptResult("processed")), (dead, AttemptResult("dead"))):
        queue.enqueue(delivery)
        claim = queue.claim(30.0, ["ep"])
        assert claim is not None and queue.finish(claim, result)
    queue.record_rejection(
        Rejection(time.time(), "ep", "POST", "/x", None, "signature_mismatch", "h", 2, None)
    )
    url = postgres_url(schema)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    options: dict[str, Any] = {"capture_output": True, "text": True, "env": env, "timeout": 60}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "webhook_guard", *args], **options)

    shown = cli("history", "--store", url, "--failed", "--json")
    assert shown.returncode == 0, shown.stderr
    assert {json.loads(line)["status"] for line in shown.stdout.splitlines()} == {
        "dead",
        "rejected",
    }
    show = cli("show", dead.id[:12], "--store", url, "--json")
    assert show.returncode == 0 and json.loads(show.stdout)["status"] == "dead"
    replayed = cli("replay", "--dead", "--store", url)
    assert replayed.returncode == 0, replayed.stderr
    assert queue.get(dead.id).status == "queued"
    purged = cli("purge", "--older-than", "0s", "--store", url)
    assert purged.returncode == 0, purged.stderr
    assert queue.get(done.id) is None and queue.rejections() == []


def test_a_held_lock_is_queue_unavailable_within_the_statement_timeout(
    make_queue: MakeQueue, schema: str
) -> None:
    """Another session holding the dedupe key's row lock: the enqueue gives up with
    QueueUnavailable after statement_timeout_ms, and the queue works again once it commits."""
    import psycopg

    from tests.services import POSTGRES_ADMIN_URL

    queue = make_queue(statement_timeout_ms=300)
    queue.enqueue(_delivery("warm-up"))  # the schema exists
    with psycopg.connect(POSTGRES_ADMIN_URL) as admin:  # a transaction, left open
        admin.execute(
            f'INSERT INTO "{schema}".dedupe (endpoint, key, delivery_id, expires_at)'
            " VALUES ('ep', 'held', 'someone-else', 1e12)"
        )
        started = time.monotonic()
        with pytest.raises(QueueUnavailable, match="statement timeout"):
            queue.enqueue(_delivery("held"))
        assert time.monotonic() - started < 3
        admin.rollback()
    assert queue.enqueue(_delivery("held")).status is Enqueued.NEW


def test_a_request_near_its_deadline_gets_its_503_by_the_deadline(
    make_queue: MakeQueue, schema: str
) -> None:
    """Another session holds the deliveries table: a request with 0.5 s left is answered 503 +
    Retry-After by its deadline (sync and from the event loop), not after the store's 5 s
    budget; once the lock is gone the same delivery is accepted."""
    import psycopg

    from tests.contract import SECRET, contract_guard
    from tests.services import POSTGRES_ADMIN_URL
    from webhook_guard.core.deadline import deadline_after
    from webhook_guard.testing import sign_request

    queue = make_queue()  # statement_timeout_ms: the default 5000
    assert queue.statement_timeout_ms == 5000
    guard = contract_guard("cloudaipilot", queue, endpoint="pg-deadline", clock=time.time)
    queue.enqueue(_delivery("warm-up"))  # the schema and a pooled connection exist
    body = b'{"event": "held"}'
    headers = sign_request("cloudaipilot", SECRET, body)

    async def receive_async() -> Any:
        with deadline_after(0.5):
            return await guard.areceive("POST", "/x", headers, body)

    with psycopg.connect(POSTGRES_ADMIN_URL) as admin:  # a transaction, left open
        admin.execute(f'LOCK TABLE "{schema}".deliveries IN EXCLUSIVE MODE')
        for receive in (
            lambda: guard.receive("POST", "/x", headers, body),
            lambda: asyncio.run(receive_async()),
        ):
            started = time.monotonic()
            with deadline_after(0.5):
                answer = receive()
            elapsed = time.monotonic() - started
            assert answer.status == 503, answer.body
            assert json.loads(answer.body) == {"error": "queue_unavailable"}
            assert any(name.lower() == "retry-after" for name, _ in answer.headers)
            # Well before the 5 s budget: the deadline (0.5 s) plus a generous margin.
            assert elapsed < 2.5, elapsed
        admin.rollback()
    with deadline_after(0.5):
        assert guard.receive("POST", "/x", headers, body).status == 200
    guard.close()


def test_outside_a_request_the_store_waits_its_whole_budget(
    make_queue: MakeQueue, schema: str
) -> None:
    """No request deadline (a worker, the CLI): a held lock is waited for up to
    statement_timeout_ms, so the deadline test above measures the request's deadline."""
    import psycopg

    from tests.services import POSTGRES_ADMIN_URL

    queue = make_queue(statement_timeout_ms=1500)
    queue.enqueue(_delivery("warm-up"))
    with psycopg.connect(POSTGRES_ADMIN_URL) as admin:
        admin.execute(f'LOCK TABLE "{schema}".deliveries IN EXCLUSIVE MODE')
        started = time.monotonic()
        with pytest.raises(QueueUnavailable, match="statement timeout"):
            queue.enqueue(_delivery("held"))
        assert time.monotonic() - started >= 1.4
        admin.rollback()


def test_waiting_for_a_connection_counts_against_the_same_budget(
    make_queue: MakeQueue, schema: str
) -> None:
    """pool_size=1 and the one connection stuck behind a lock: a second call waits for it and
    gives up within the one statement_timeout budget, not after a wait plus a full timeout;
    afterwards the statement timeout is back to normal."""
    import psycopg

    from tests.services import POSTGRES_ADMIN_URL

    queue = make_queue(statement_timeout_ms=600, pool_size=1)
    queue.enqueue(_delivery("warm-up"))
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            queue.enqueue(_delivery("held"))
        except QueueUnavailable as error:
            errors.append(error)

    with psycopg.connect(POSTGRES_ADMIN_URL) as admin:
        admin.execute(
            f'INSERT INTO "{schema}".dedupe (endpoint, key, delivery_id, expires_at)'
            " VALUES ('ep', 'held', 'someone-else', 1e12)"
        )
        holder = threading.Thread(target=blocked)
        holder.start()
        time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(QueueUnavailable):
            queue.enqueue(_delivery("held"))
        assert time.monotonic() - started < 0.6 + 0.3
        holder.join()
        admin.rollback()
    assert len(errors) == 1
    timeout = queue._run(lambda conn: conn.execute("SHOW statement_timeout").fetchone()[0])
    assert timeout == "600ms"


def test_a_forked_child_never_closes_its_parents_connections(make_queue: MakeQueue) -> None:
    """A child (as gunicorn --preload forks) that exits, finalizers run, leaves the parent's
    session alone; a child that uses the queue opens connections of its own."""
    import os

    queue = make_queue()

    def backend() -> int:  # asked of the server: a dead session cannot answer
        return int(queue._run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0]))

    parent_backend = backend()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 0
        try:
            queue._finalizer()  # what interpreter exit runs
            child_backend = backend()
            code = 3 if child_backend == parent_backend else 0
            queue._finalizer()
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend() == parent_backend


def test_the_dashboard_serves_a_postgres_store(
    make_queue: MakeQueue, schema: str, tmp_path: Path
) -> None:
    """`webhook-guard dashboard --store postgresql://...` lists the store's deliveries."""
    import os
    import urllib.request

    from tests.servers import BIN, free_port, serve

    queue = make_queue()
    delivery = _delivery("shown")
    queue.enqueue(delivery)
    port = free_port()
    command = [str(BIN / "webhook-guard"), "dashboard", "--store", postgres_url(schema)]
    with serve([*command, "--port", str(port)], dict(os.environ), port, tmp_path / "log"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and delivery.id[:12] in page.read().decode()


def test_the_django_dashboard_reads_a_postgres_db_setting(
    make_queue: MakeQueue, schema: str
) -> None:
    """WEBHOOK_GUARD_DASHBOARD["DB"] may be a postgresql:// URL: the mounted pages read it."""
    pytest.importorskip("django")
    from django.test import Client, override_settings

    from tests.adapters.transports_django import configure

    queue = make_queue()
    delivery = _delivery("django")
    queue.enqueue(delivery)
    configure()
    with override_settings(
        ROOT_URLCONF="tests.dashboard.django_urls",
        WEBHOOK_GUARD_DASHBOARD={
            "DB": postgres_url(schema),
            "AUTHORIZE": "tests.dashboard.django_urls.header_staff",
        },
    ):
        page = Client(HTTP_X_TEST_STAFF="yes").get("/admin/webhooks/")
    assert page.status_code == 200 and delivery.id[:12] in page.content.decode()


def test_purge_forgets_expired_dedupe_keys_and_old_rejections(
    make_queue: MakeQueue, schema: str
) -> None:
    """purge drops expired dedupe keys (not live ones) and rejections past max_rejections."""
    import psycopg

    from tests.services import POSTGRES_ADMIN_URL

    short, long = make_queue(dedupe_seconds=0.01), make_queue()
    short.enqueue(_delivery("expires"))
    long.enqueue(_delivery("stays"))
    for _ in range(3):
        long.record_rejection(
            Rejection(time.time(), "ep", "POST", "/x", None, "signature_mismatch", "", 0, None)
        )
    time.sleep(0.05)
    assert long.purge(max_rejections=1) == 2
    with psycopg.connect(POSTGRES_ADMIN_URL) as conn:
        keys = conn.execute(f'SELECT key FROM "{schema}".dedupe').fetchall()
    assert keys == [("stays",)] and len(long.rejections()) == 1
