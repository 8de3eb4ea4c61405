"""The delivery store contract, run against RedisStore, SQLiteQueue and PostgresQueue alike:
one table of behaviours, so the stores cannot drift; then what only the Redis store has to
prove."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import postgres_schema, postgres_url, require_postgres, require_redis
from webhook_guard.core.delivery import Delivery, new_delivery_id
from webhook_guard.core.processing import AttemptResult
from webhook_guard.core.queue import Enqueued, Rejection
from webhook_guard.core.store import DeliveryStore, HistoryReader
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable
from webhook_guard.history import history_rows
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.stores import engine_url, open_store

STORE_DB = 12
STORE_URL = f"redis://127.0.0.1:6379/{STORE_DB}"
BODY = bytes(range(256)) + b"\r\n\x00 tail"  # every byte value: nothing may be decoded

MakeStore = Callable[..., Any]


def _flush() -> None:
    import redis

    redis.Redis.from_url(STORE_URL).flushdb()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.services),
        pytest.param("postgres", marks=pytest.mark.services),
    ]
)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Builds the store under test: ``make_store(dedupe_seconds=...)``."""
    built: list[Any] = []
    schemas = contextlib.ExitStack()  # a fresh PostgreSQL schema per store, dropped after

    def make(**options: Any) -> Any:
        if request.param == "sqlite":
            store: Any = SQLiteQueue(tmp_path / f"store{len(built)}.db", **options)
        elif request.param == "postgres":
            from webhook_guard.queues.postgres import PostgresQueue

            schema = schemas.enter_context(postgres_schema())
            store = PostgresQueue(postgres_url(schema), **options)
        else:
            from webhook_guard.stores.redis import RedisStore

            store = RedisStore(STORE_URL, prefix=f"t{len(built)}", **options)
        built.append(store)
        return store

    if request.param == "redis":
        pytest.importorskip("redis", reason="the Redis store needs redis-py")
        require_redis()
        _flush()
    if request.param == "postgres":
        require_postgres()
    yield make
    for store in built:
        store.close()
        if hasattr(store, "dispose"):
            store.dispose()
    schemas.close()
    if request.param == "redis":
        _flush()


@pytest.fixture
def store(make_store: MakeStore) -> Any:
    return make_store()


def _delivery(
    key: str | None = None, *, endpoint: str = "ep", body: bytes = b"{}", at: float | None = None
) -> Delivery:
    return Delivery(
        id=new_delivery_id(),
        endpoint=endpoint,
        body=body,
        dedupe_key=key,
        received_at=time.time() if at is None else at,
        event_type="invoice.paid",
        scheme="github",
    )


def _rejection(endpoint: str = "ep", at: float | None = None) -> Rejection:
    return Rejection(
        received_at=time.time() if at is None else at,
        endpoint=endpoint,
        method="POST",
        path="/webhook",
        remote_addr="10.0.0.1",
        reason="signature_mismatch",
        hint="no secret matched",
        body_size=12,
        body_sha256="ab" * 32,
    )


# -- dedupe and release ------------------------------------------------------------------------


def test_both_stores_implement_the_protocols(store: Any) -> None:
    """Each store is a DeliveryStore and a HistoryReader."""
    assert isinstance(store, DeliveryStore) and isinstance(store, HistoryReader)


def test_reserve_is_new_then_duplicate_naming_the_first_id(store: Any) -> None:
    """The same key twice: NEW, then DUPLICATE carrying the first delivery's id; one record."""
    first, second = _delivery("k1"), _delivery("k1")
    assert store.reserve(first, "rq").status is Enqueued.NEW
    again = store.reserve(second, "rq")
    assert again.status is Enqueued.DUPLICATE and again.delivery_id == first.id
    assert [d.id for d in store.deliveries()] == [first.id]
    assert store.get(first.id).status == "queued"


def test_dedupe_is_scoped_by_endpoint(store: Any) -> None:
    """One key on two endpoints is two deliveries."""
    assert store.reserve(_delivery("k", endpoint="a"), "rq").status is Enqueued.NEW
    assert store.reserve(_delivery("k", endpoint="b"), "rq").status is Enqueued.NEW
    assert store.reserve(_delivery("k", endpoint="a"), "rq").status is Enqueued.DUPLICATE


def test_deliveries_without_a_key_never_dedupe(store: Any) -> None:
    """No dedupe key: every delivery is new."""
    assert all(store.reserve(_delivery(None), "rq").status is Enqueued.NEW for _ in range(3))
    assert len(store.deliveries()) == 3


def test_release_frees_the_key_and_removes_the_record(store: Any) -> None:
    """After a failed publish the sender's retry is new again, and nothing is left behind."""
    first = _delivery("k")
    store.reserve(first, "rq")
    store.attempt_started(first.id, 1)
    store.release(first)
    assert store.get(first.id) is None and store.deliveries() == []
    retry = _delivery("k")
    assert store.reserve(retry, "rq").status is Enqueued.NEW


def test_release_keeps_a_key_that_another_delivery_holds(store: Any) -> None:
    """Releasing a delivery that lost the key to another leaves that other's key alone."""
    holder, loser = _delivery("k"), _delivery("k")
    store.reserve(holder, "rq")
    store.reserve(loser, "rq")
    store.release(loser)
    again = store.reserve(_delivery("k"), "rq")
    assert again.status is Enqueued.DUPLICATE and again.delivery_id == holder.id


def test_an_expired_dedupe_key_no_longer_dedupes(make_store: MakeStore) -> None:
    """Past its window a key is free: the next delivery with it is new."""
    store = make_store(dedupe_seconds=0.05)
    store.reserve(_delivery("k"), "rq")
    deadline = time.monotonic() + 5
    while store.reserve(_delivery("k"), "rq").status is Enqueued.DUPLICATE:
        assert time.monotonic() < deadline, "the dedupe key never expired"
        time.sleep(0.02)


def test_concurrent_reserves_of_one_key_make_exactly_one_new(store: Any) -> None:
    """Eight threads race on one key: one NEW, seven DUPLICATEs naming it."""
    results: list[Any] = []
    start = threading.Barrier(8)

    def reserve() -> None:
        start.wait()
        results.append(store.reserve(_delivery("race"), "rq"))

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    new = [r for r in results if r.status is Enqueued.NEW]
    assert len(new) == 1
    assert {r.delivery_id for r in results} == {new[0].delivery_id}


# -- attempts ----------------------------------------------------------------------------------

RETRY = AttemptResult("retrying", 0.5, "RuntimeError: boom", "Traceback: boom")
DEAD = AttemptResult("dead", None, "gave up after 2 attempts: boom", "Traceback: dead")
OK = AttemptResult("processed")

# (name, steps: (attempt,) = started, (attempt, result) = finished, status, attempts,
#  outcomes of the attempt log, last_error)
SEQUENCES: list[tuple[str, list[tuple[Any, ...]], str, int, list[str | None], str | None]] = [
    ("processed at once", [(1,), (1, OK)], "processed", 1, ["processed"], None),
    ("still retrying", [(1,), (1, RETRY)], "retrying", 1, ["failed"], RETRY.error),
    (
        "processed on the third attempt",
        [(1,), (1, RETRY), (2,), (2, RETRY), (3,), (3, OK)],
        "processed",
        3,
        ["failed", "failed", "processed"],
        None,
    ),
    ("dead", [(1,), (1, RETRY), (2,), (2, DEAD)], "dead", 2, ["failed", "dead"], DEAD.error),
    ("worker died mid-attempt", [(1,), (2,)], "processing", 2, ["lost", None], None),
]


@pytest.mark.parametrize(
    ("steps", "status", "attempts", "outcomes", "last_error"),
    [case[1:] for case in SEQUENCES],
    ids=[case[0] for case in SEQUENCES],
)
def test_attempt_sequences_give_the_same_record(
    store: Any,
    steps: list[tuple[Any, ...]],
    status: str,
    attempts: int,
    outcomes: list[str | None],
    last_error: str | None,
) -> None:
    """attempt_started/attempt_finished sequences end in the same status and attempt log."""
    delivery = _delivery()
    store.reserve(delivery, "rq")
    for step in steps:
        if len(step) == 1:
            store.attempt_started(delivery.id, step[0])
        else:
            store.attempt_finished(delivery.id, step[0], step[1])
    record = store.get(delivery.id)
    assert (record.status, record.attempts, record.last_error) == (status, attempts, last_error)
    assert [a.outcome for a in record.attempt_log] == outcomes
    assert [a.attempt for a in record.attempt_log] == [s[0] for s in steps if len(s) == 1]
    for entry in record.attempt_log:
        assert entry.started_at >= delivery.received_at
        if entry.outcome == "failed":
            assert (entry.error, entry.traceback) == (RETRY.error, RETRY.traceback)
        if entry.outcome == "dead":
            assert (entry.error, entry.traceback) == (DEAD.error, DEAD.traceback)
        if entry.outcome == "lost":
            assert entry.finished_at is not None and "stopped" in (entry.error or "")


def test_attempts_of_a_released_delivery_are_ignored(store: Any) -> None:
    """A late worker report about a delivery that is gone records nothing and does not fail."""
    delivery = _delivery()
    store.reserve(delivery, "rq")
    store.release(delivery)
    store.attempt_started(delivery.id, 1)
    store.attempt_finished(delivery.id, 1, OK)
    assert store.get(delivery.id) is None and store.deliveries() == []


def test_mark_replayed_resets_the_budget_but_not_under_a_worker(store: Any) -> None:
    """Replay by id or by status: queued with 0 attempts; a delivery in processing is left."""
    dead, retrying, busy, done = (_delivery() for _ in range(4))
    for delivery in (dead, retrying, busy, done):
        store.reserve(delivery, "rq")
        store.attempt_started(delivery.id, 1)
    store.attempt_finished(dead.id, 1, DEAD)
    store.attempt_finished(retrying.id, 1, RETRY)
    store.attempt_finished(done.id, 1, OK)
    assert sorted(store.mark_replayed(statuses=("retrying", "dead"))) == sorted(
        [dead.id, retrying.id]
    )
    assert store.mark_replayed([busy.id, done.id, "no-such-id"]) == [done.id]
    for delivery in (dead, retrying, done):
        record = store.get(delivery.id)
        assert (record.status, record.attempts) == ("queued", 0)
    assert store.get(busy.id).status == "processing"
    assert store.mark_replayed(statuses=()) == []


def test_load_round_trips_bytes_and_headers_exactly(store: Any) -> None:
    """load gives back the delivery as received: every byte, header order, metadata."""
    headers = (("x-github-event", "push"), ("x-dup", "1"), ("x-dup", "2"), ("x-ü", "ü ✓"))
    delivery = Delivery(
        id=new_delivery_id(),
        endpoint="ep",
        body=BODY,
        headers=headers,
        event_type=None,
        dedupe_key="key:with:colons",
        received_at=1_700_000_000.123456,
        scheme="github",
    )
    store.reserve(delivery, "rq")
    loaded = store.load(delivery.id)
    assert loaded == delivery and loaded.body == BODY and loaded.headers == headers
    record = store.get(delivery.id)
    assert (record.body_size, record.body_sha256) == (len(BODY), delivery.body_sha256)
    assert store.load("missing") is None


# -- history -----------------------------------------------------------------------------------


def test_rejections_are_metadata_only_newest_first_and_filtered(store: Any) -> None:
    """Rejections keep reason, hint and body size/hash (no body); since/endpoint/limit work."""
    now = time.time()
    store.record_rejection(_rejection("a", now - 100))
    store.record_rejection(_rejection("b", now - 10))
    store.record_rejection(_rejection("a", now - 1))
    rows = store.rejections()
    assert [r.received_at for r in rows] == [now - 1, now - 10, now - 100]
    assert not hasattr(rows[0], "body")
    first = rows[0]
    assert (first.reason, first.hint, first.body_size, first.body_sha256) == (
        "signature_mismatch",
        "no secret matched",
        12,
        "ab" * 32,
    )
    assert (first.method, first.path, first.remote_addr) == ("POST", "/webhook", "10.0.0.1")
    assert len({r.id for r in rows}) == 3
    assert [r.endpoint for r in store.rejections(endpoint="a")] == ["a", "a"]
    assert len(store.rejections(since=now - 50)) == 2
    assert len(store.rejections(limit=1)) == 1


def test_history_filters_newest_first(store: Any) -> None:
    """deliveries() filters by status, since and endpoint, newest first, up to limit."""
    now = time.time()
    old, mid, new = (
        _delivery(at=now - age, endpoint=ep) for age, ep in ((300, "a"), (30, "b"), (3, "a"))
    )
    for delivery in (old, mid, new):
        store.reserve(delivery, "rq")
    store.attempt_started(mid.id, 1)
    store.attempt_finished(mid.id, 1, DEAD)
    assert [d.id for d in store.deliveries()] == [new.id, mid.id, old.id]
    assert [d.id for d in store.deliveries(statuses=("dead",))] == [mid.id]
    two = store.deliveries(statuses=("queued", "dead"), limit=2)
    assert [d.id for d in two] == [new.id, mid.id]
    assert [d.id for d in store.deliveries(since=now - 60)] == [new.id, mid.id]
    assert [d.id for d in store.deliveries(endpoint="a")] == [new.id, old.id]
    assert store.deliveries(endpoint="a", since=now - 60, statuses=("dead",)) == []
    summary = store.deliveries(limit=1)[0]
    assert (summary.body, summary.headers, summary.attempt_log) == (b"", (), ())
    assert store.counts() == {"queued": 2, "dead": 1}


def test_get_accepts_a_unique_prefix(store: Any) -> None:
    """show takes an id prefix: unique -> that delivery; ambiguous or unknown -> None."""
    a = Delivery(id="aa11" + "0" * 28, endpoint="ep", body=b"1", received_at=1.0)
    b = Delivery(id="aa22" + "0" * 28, endpoint="ep", body=b"2", received_at=2.0)
    store.reserve(a, "rq")
    store.reserve(b, "rq")
    assert store.get("aa1").id == a.id and store.get(b.id).id == b.id
    assert store.get("aa") is None and store.get("zz") is None and store.get("a*") is None


def test_history_rows_reads_either_store(store: Any) -> None:
    """history_rows takes any HistoryReader: --failed lists dead deliveries and rejections."""
    done, dead = _delivery(), _delivery()
    for delivery, result in ((done, OK), (dead, DEAD)):
        store.reserve(delivery, "rq")
        store.attempt_started(delivery.id, 1)
        store.attempt_finished(delivery.id, 1, result)
    store.record_rejection(_rejection())
    assert {r.status for r in history_rows(store)} == {"processed", "dead", "rejected"}
    failed = history_rows(store, failed=True)
    assert sorted(r.status for r in failed) == ["dead", "rejected"]
    assert any(r.detail.startswith("signature_mismatch") for r in failed)


def test_purge_forgets_old_processed_deliveries_and_rejections(store: Any) -> None:
    """purge drops processed deliveries and rejections past the age; dead ones stay."""
    done, dead = _delivery(at=time.time() - 10), _delivery(at=time.time() - 10)
    for delivery, result in ((done, OK), (dead, DEAD)):
        store.reserve(delivery, "rq")
        store.attempt_started(delivery.id, 1)
        store.attempt_finished(delivery.id, 1, result)
    store.record_rejection(_rejection(at=time.time() - 10))
    assert store.purge(older_than=3600) == 0
    time.sleep(0.01)
    assert store.purge(older_than=0) == 2
    assert [d.id for d in store.deliveries()] == [dead.id] and store.rejections() == []
    assert store.get(done.id) is None


# -- Redis only --------------------------------------------------------------------------------


@pytest.fixture
def redis_store() -> Iterator[Any]:
    pytest.importorskip("redis", reason="the Redis store needs redis-py")
    require_redis()
    _flush()
    from webhook_guard.stores.redis import RedisStore

    store = RedisStore(STORE_URL)
    yield store
    store.close()
    _flush()


@pytest.mark.services
def test_redis_keys_follow_the_documented_layout(redis_store: Any) -> None:
    """SET NX with the dedupe window under <prefix>:dedupe:<endpoint>:<key>, holding the id."""
    import redis

    delivery = _delivery("evt_1")
    redis_store.reserve(delivery, "rq")
    raw = redis.Redis.from_url(STORE_URL)
    key = "webhook_guard:dedupe:ep:evt_1"
    assert raw.get(key) == delivery.id.encode()
    assert 6 * 86400 < raw.ttl(key) <= 7 * 86400
    assert raw.hget(f"webhook_guard:delivery:{delivery.id}", "body") == b"{}"
    assert raw.zscore("webhook_guard:deliveries", delivery.id) == delivery.received_at


@pytest.mark.services
def test_prefixes_keep_stores_apart(redis_store: Any) -> None:
    """Two prefixes on one database share nothing, dedupe keys included."""
    from webhook_guard.stores.redis import RedisStore

    other = RedisStore(STORE_URL, prefix="other")
    redis_store.reserve(_delivery("k"), "rq")
    assert other.reserve(_delivery("k"), "rq").status is Enqueued.NEW
    assert len(other.deliveries()) == 1 and len(redis_store.deliveries()) == 1
    other.close()


def test_a_down_redis_is_queue_unavailable_at_once() -> None:
    """Every operation on an unreachable Redis raises QueueUnavailable, within the timeouts."""
    pytest.importorskip("redis", reason="the Redis store needs redis-py")
    from tests.servers import free_port
    from webhook_guard.stores.redis import RedisStore

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    for call in (
        lambda: store.reserve(_delivery("k"), "rq"),
        lambda: store.release(_delivery("k")),
        lambda: store.attempt_started("x", 1),
        lambda: store.record_rejection(_rejection()),
        lambda: store.deliveries(),
        lambda: store.get("x"),
        lambda: store.mark_replayed(statuses=("dead",)),
    ):
        with pytest.raises(QueueUnavailable, match="redis store"):
            call()
    assert time.monotonic() - started < 10


def test_a_client_that_decodes_responses_is_refused() -> None:
    """A factory client with decode_responses=True would corrupt bodies: refused by name."""
    redis = pytest.importorskip("redis", reason="the Redis store needs redis-py")
    from webhook_guard.stores.redis import RedisStore

    store = RedisStore(lambda: redis.Redis(port=1, decode_responses=True))
    with pytest.raises(ConfigurationError, match="decode_responses"):
        store.deliveries()


def test_open_store_and_engine_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """?store=redis://... opens a RedisStore; no store means SQLite at WEBHOOK_GUARD_DB."""
    pytest.importorskip("redis", reason="the Redis store needs redis-py")
    from webhook_guard.stores.redis import RedisStore

    monkeypatch.setenv("WEBHOOK_GUARD_DB", str(tmp_path / "env.db"))
    assert isinstance(open_store("redis://127.0.0.1:6379/1"), RedisStore)
    default = open_store(None)
    assert isinstance(default, SQLiteQueue) and default.path == str(tmp_path / "env.db")
    with pytest.raises(ConfigurationError, match="store="):
        open_store("amqp://127.0.0.1//")
    parts = engine_url("rq://:pw@h:6380/2?queue=hooks&store=redis://s:6379/1&ssl=x", "rq")
    assert (parts.broker, parts.store, parts.queue) == (
        "redis://:pw@h:6380/2?ssl=x",
        "redis://s:6379/1",
        "hooks",
    )
    assert engine_url("arq+rediss://h/0", "arq").broker == "rediss://h/0"
    with pytest.raises(ConfigurationError):
        engine_url("rq+amqp://h/0", "rq")


def test_a_late_record_of_an_earlier_attempt_keeps_the_later_status(store: Any) -> None:
    """Attempt 2 starts and finishes before attempt 1 is recorded (its retry was published
    first): attempt 1's row is corrected from lost to failed, the status stays processed."""
    delivery = _delivery("late")
    store.reserve(delivery, "rq")
    store.attempt_started(delivery.id, 1)
    store.attempt_started(delivery.id, 2)
    store.attempt_finished(delivery.id, 2, AttemptResult("processed"))
    store.attempt_finished(delivery.id, 1, AttemptResult("retrying", 0.0, "boom"))
    record = store.get(delivery.id)
    assert (record.status, record.attempts) == ("processed", 2)
    assert [(a.attempt, a.outcome) for a in record.attempt_log] == [(1, "failed"), (2, "processed")]


def test_history_pages_through_ties_and_finds_ids_and_rejections(store: Any) -> None:
    """Both stores: a cursor after (time, id) pages through deliveries received at one instant
    without loss or repeat; ids are found by prefix; a rejection by its number."""
    from webhook_guard.history import cursor, history_rows

    at = 1_800_000_000.0
    ids = [store.reserve(_delivery(f"k{n}", at=at), "rq").delivery_id for n in range(7)]
    store.record_rejection(_rejection(at=at))
    seen: list[str] = []
    before = None
    for _ in range(5):
        page = history_rows(store, limit=4, before=before)
        seen += [row.id for row in page]
        if len(page) < 4:
            break
        before = cursor(page[-1])
    assert sorted(seen) == sorted([*ids, "r1"]) and len(seen) == len(set(seen))
    assert store.match_ids(ids[0][:12]) == [ids[0]]
    assert store.match_ids("zzzz") == []
    assert store.get_rejection(1).reason == "signature_mismatch"
    assert store.get_rejection(99) is None
