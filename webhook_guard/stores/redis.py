"""Dedupe and delivery history in Redis, shared by every machine that receives or processes.

Keys, under ``prefix`` (default ``webhook_guard``):

- ``dedupe:<endpoint>:<key>``: the id of the delivery that holds the key, ``SET NX PX`` with the
  dedupe window (7 days by default); Redis forgets it when the window ends.
- ``delivery:<id>``: a hash with the metadata, the headers (JSON) and the raw body bytes;
  ``deliveries``: a sorted set of ids by ``received_at``, for listing newest first.
- ``attempts:<id>``: a list of JSON attempt records, oldest first.
- ``rejections``: a sorted set of rejected requests (metadata only, never the body), capped.

``reserve`` and ``release`` are Lua scripts, so dedupe and the record are one atomic step, and
``release`` frees the key only while it still names the released delivery. Every Redis error
becomes ``QueueUnavailable``. All keys of one delivery must live on one node (no Redis Cluster
unless ``prefix`` holds a hash tag such as ``{webhook_guard}``).

This module imports redis-py (``pip install 'webhook-guard[redis]'``) and no queue engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "webhook_guard.stores.redis needs redis-py: pip install 'webhook-guard[redis]'"
    ) from error

from webhook_guard.core.delivery import Delivery, decode_headers
from webhook_guard.core.queue import Enqueued, EnqueueResult, Rejection
from webhook_guard.core.records import (
    ATTEMPT_OUTCOMES,
    DEFAULT_DEDUPE_SECONDS,
    DEFAULT_MAX_REJECTIONS,
    DEFAULT_RETENTION_SECONDS,
    AttemptRecord,
    AttemptResult,
    DeliveryRecord,
    RejectionRecord,
)
from webhook_guard.exceptions import ConfigurationError, QueueUnavailable

__all__ = ["RedisStore", "from_url"]

CONNECT_TIMEOUT = 1.0  # a down Redis answers 503 quickly, not after the sender gave up
SOCKET_TIMEOUT = 2.0
PAGE = 200  # ids read per round trip when listing
LOST = "the worker stopped before finishing"
_SUMMARY = (
    *("id", "endpoint", "scheme", "event_type", "dedupe_key", "received_at", "status"),
    *("attempts", "run_at", "last_error", "updated_at", "body_size", "body_sha256"),
)

# KEYS: delivery hash, index, [dedupe key]; ARGV: id, window (ms), received_at, field, value...
_RESERVE = """
if KEYS[3] and not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {0, redis.call('GET', KEYS[3])}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {1, ARGV[1]}
"""
# KEYS: delivery hash, attempts, index, [dedupe key]; ARGV: id. The key goes only if still ours.
_RELEASE = """
if KEYS[4] and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
redis.call('DEL', KEYS[1], KEYS[2])
return redis.call('ZREM', KEYS[3], ARGV[1])
"""
# KEYS: delivery hash; ARGV: now. A delivery in a worker's hands is not re-queued under it.
_REPLAY = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'processing' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'run_at', ARGV[1],
           'updated_at', ARGV[1])
return 1
"""
# KEYS: rejections, sequence; ARGV: received_at, JSON metadata, cap.
_REJECT = """
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[1], n .. ' ' .. ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[3]) + 1))
return n
"""
# KEYS: delivery hash, attempts, index; ARGV: id, cutoff.
_PURGE = """
local fields = redis.call('HMGET', KEYS[1], 'status', 'updated_at')
if fields[1] ~= 'processed' or tonumber(fields[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return redis.call('ZREM', KEYS[3], ARGV[1])
"""
_SCRIPTS = {
    "reserve": _RESERVE,
    "release": _RELEASE,
    "replay": _REPLAY,
    "reject": _REJECT,
    "purge": _PURGE,
}


class RedisStore:
    """Delivery store in Redis: ``RedisStore("redis://host:6379/1")`` or
    ``RedisStore(lambda: redis.Redis(...))`` (a client with ``decode_responses=False``).

    Args:
        client: a ``redis://`` / ``rediss://`` / ``unix://`` URL, or a function returning a
            redis-py client; called once per process, on first use.
        prefix: the start of every key.
        dedupe_seconds: how long a delivery id keeps deduping (at least a sender's retry horizon).
        max_rejections: how many rejected requests the history keeps.
    """

    def __init__(
        self,
        client: str | Callable[[], Any],
        *,
        prefix: str = "webhook_guard",
        dedupe_seconds: float = DEFAULT_DEDUPE_SECONDS,
        max_rejections: int = DEFAULT_MAX_REJECTIONS,
    ) -> None:
        if isinstance(client, str):
            url = client
            self._where = _redacted(url)
            self._factory: Callable[[], Any] = lambda: redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                # One immediate retry revives a pooled connection that Redis closed meanwhile.
                retry=Retry(NoBackoff(), 1),
            )
        else:
            self._where, self._factory = "redis", client
        self.prefix = prefix
        self.dedupe_seconds = dedupe_seconds
        self.max_rejections = max_rejections
        self._client: Any = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._scripts: dict[str, Any] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """``RedisStore.from_url("redis://127.0.0.1:6379/1")``."""
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"<RedisStore {self._where} prefix={self.prefix!r}>"

    # -- plumbing ----------------------------------------------------------------------------

    def _redis(self) -> Any:
        if self._pid != os.getpid():  # first use, or forked: never share a parent's sockets
            with self._lock:
                if self._pid != os.getpid():
                    client = self._factory()
                    kwargs = client.connection_pool.connection_kwargs
                    if kwargs.get("decode_responses"):
                        raise ConfigurationError("RedisStore needs decode_responses=False")
                    self._scripts = {
                        name: client.register_script(source) for name, source in _SCRIPTS.items()
                    }
                    self._client, self._pid = client, os.getpid()
        return self._client

    @contextmanager
    def _errors(self) -> Iterator[Any]:
        try:
            yield self._redis()
        except (redis.RedisError, OSError) as error:
            raise QueueUnavailable(f"redis store {self._where}: {error}") from error

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _keys(self, delivery_id: str) -> tuple[str, str]:
        return self._key("delivery", delivery_id), self._key("attempts", delivery_id)

    def _ids(self, client: Any, low: Any = "-inf", high: Any = "+inf") -> Iterator[str]:
        """Delivery ids with ``low <= received_at <= high``, newest first, a page at a time."""
        offset = 0
        while True:
            page = client.zrevrangebyscore(self._key("deliveries"), high, low, offset, PAGE)
            yield from (raw.decode() for raw in page)
            if len(page) < PAGE:
                return
            offset += PAGE

    def close(self) -> None:
        """Close this process's Redis connections."""
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client, self._pid = None, None

    # -- the request side --------------------------------------------------------------------

    def reserve(self, delivery: Delivery, engine: str) -> EnqueueResult:
        """Dedupe and record a delivery atomically (a Lua script); DUPLICATE names the first id."""
        d, now = delivery, time.time()
        fields: dict[str, Any] = {
            "id": d.id,
            "endpoint": d.endpoint,
            "scheme": d.scheme,
            "received_at": repr(d.received_at),
            "headers": json.dumps(list(d.headers)),
            "body": d.body,
            "body_size": len(d.body),
            "body_sha256": d.body_sha256,
            "status": "queued",
            "engine": engine,
            "attempts": 0,
            "run_at": repr(now),
            "updated_at": repr(now),
        }
        if d.event_type is not None:
            fields["event_type"] = d.event_type
        keys = [*self._keys(d.id)[:1], self._key("deliveries")]
        if d.dedupe_key is not None:
            keys.append(self._key("dedupe", d.endpoint, d.dedupe_key))
            fields["dedupe_key"] = d.dedupe_key
        window_ms = max(1, int(self.dedupe_seconds * 1000))
        args = [d.id, window_ms, repr(d.received_at), *(x for kv in fields.items() for x in kv)]
        with self._errors():
            new, holder = self._scripts["reserve"](keys=keys, args=args)
        if not new:
            return EnqueueResult(Enqueued.DUPLICATE, holder.decode())
        return EnqueueResult(Enqueued.NEW, d.id)

    def release(self, delivery: Delivery) -> None:
        """Forget a reserved delivery; its dedupe key goes only while it still names it."""
        keys = [*self._keys(delivery.id), self._key("deliveries")]
        if delivery.dedupe_key is not None:
            keys.append(self._key("dedupe", delivery.endpoint, delivery.dedupe_key))
        with self._errors():
            self._scripts["release"](keys=keys, args=[delivery.id])

    def record_rejection(self, rejection: Rejection) -> None:
        """Keep a refused request's metadata (capped at ``max_rejections``)."""
        r = rejection
        meta: list[Any] = [r.endpoint, r.method, r.path, r.remote_addr, r.reason, r.hint]
        meta += [r.body_size, r.body_sha256, r.received_at]
        with self._errors():
            self._scripts["reject"](
                keys=[self._key("rejections"), self._key("rejection_seq")],
                args=[repr(r.received_at), json.dumps(meta), self.max_rejections],
            )

    async def arecord_rejection(self, rejection: Rejection) -> None:
        """``record_rejection`` off the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.record_rejection, rejection)

    # -- the worker side ---------------------------------------------------------------------

    def attempt_started(self, delivery_id: str, attempt: int) -> None:
        """Record that attempt ``attempt`` began (lost attempts before it are marked so)."""
        now = time.time()
        entry = dataclasses.asdict(AttemptRecord(attempt, now, None, None, None, None))
        lost = {"finished_at": now, "outcome": "lost", "error": LOST}
        fields = {"status": "processing", "attempts": attempt, "updated_at": repr(now)}
        self._update(delivery_id, fields, (), lambda e: e["finished_at"] is None, lost, entry)

    def attempt_finished(self, delivery_id: str, attempt: int, result: AttemptResult) -> None:
        """Record how attempt ``attempt`` ended, unless a later one already started."""
        now = time.time()
        outcome = ATTEMPT_OUTCOMES[result.status]
        error = None if result.status == "processed" else result.error
        fields: dict[str, Any] = {
            "status": result.status,
            "run_at": repr(now + (result.delay or 0.0)),
            "updated_at": repr(now),
        }
        if error is not None:
            fields["last_error"] = error
        finished = {
            "finished_at": now,
            "outcome": outcome,
            "error": result.error,
            "traceback": result.traceback,
        }
        # A late record of an earlier attempt (its retry was published first and has started)
        # corrects that attempt's row, even one marked lost, but leaves the status alone.
        self._update(
            delivery_id,
            fields,
            () if error is not None else ("last_error",),
            lambda e: (
                e["attempt"] == attempt and (e["finished_at"] is None or e["outcome"] == "lost")
            ),
            finished,
            fence=attempt,
        )

    def _update(
        self,
        delivery_id: str,
        fields: dict[str, Any],
        cleared: tuple[str, ...],
        matches: Callable[[dict[str, Any]], bool],
        change: dict[str, Any],
        append: dict[str, Any] | None = None,
        fence: int | None = None,
    ) -> None:
        """Set ``fields`` of a delivery, apply ``change`` to the attempts that ``matches`` (with
        ``fence``: only the latest such attempt, and ``fields`` only while the delivery's attempt
        count is still ``fence``), append ``append``: one transaction, retried if the attempt
        log changed meanwhile."""
        key, log = self._keys(delivery_id)

        def update(pipe: Any) -> None:
            entries = [json.loads(raw) for raw in pipe.lrange(log, 0, -1)]
            if not pipe.exists(key):
                return  # released or purged: nothing to record
            current = pipe.hget(key, "attempts")
            owns_status = fence is None or int(current or 0) == fence
            indexes = [i for i, entry in enumerate(entries) if matches(entry)]
            if fence is not None:
                indexes = indexes[-1:]
            pipe.multi()
            if owns_status:
                pipe.hset(key, mapping=fields)
                if cleared:
                    pipe.hdel(key, *cleared)
            for index in indexes:
                pipe.lset(log, index, json.dumps({**entries[index], **change}))
            if append is not None:
                pipe.rpush(log, json.dumps(append))

        with self._errors() as client:
            client.transaction(update, key, log)

    def load(self, delivery_id: str) -> Delivery | None:
        """The stored delivery, body and headers included (for replay), or None."""
        record = self.get(delivery_id)
        return record.delivery() if record is not None else None

    def mark_replayed(
        self, delivery_ids: list[str] | None = None, *, statuses: tuple[str, ...] = ()
    ) -> list[str]:
        """Queue deliveries again with a fresh attempt budget (not one a worker holds)."""
        with self._errors() as client:
            if delivery_ids is None:
                wanted = {s.encode() for s in statuses}
                ids = list(self._ids(client))
                pipe = client.pipeline(transaction=False)
                for delivery_id in ids:
                    pipe.hget(self._keys(delivery_id)[0], "status")
                found = pipe.execute()
                delivery_ids = [i for i, s in zip(ids, found, strict=True) if s in wanted]
            now = repr(time.time())
            replayed = [
                delivery_id
                for delivery_id in delivery_ids
                if self._scripts["replay"](keys=[self._keys(delivery_id)[0]], args=[now])
            ]
        return replayed

    # -- history -----------------------------------------------------------------------------

    def deliveries(
        self,
        *,
        statuses: tuple[str, ...] = (),
        since: float | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        before: tuple[float, str] | None = None,
    ) -> list[DeliveryRecord]:
        """Accepted deliveries, newest first (ties by id, descending); ``before``: only those
        after ``(received_at, id)`` in that order (the history's cursor)."""
        found: list[DeliveryRecord] = []
        high = "+inf" if before is None else repr(before[0])
        with self._errors() as client:
            ids = self._ids(client, "-inf" if since is None else since, high)
            while len(found) < limit:
                page = [i for _, i in zip(range(PAGE), ids, strict=False)]
                if not page:
                    break
                pipe = client.pipeline(transaction=False)
                for delivery_id in page:
                    pipe.hmget(self._keys(delivery_id)[0], _SUMMARY)
                for values in pipe.execute():
                    if values[0] is None:
                        continue  # released or purged since the page was read
                    record = _summary(values)
                    if before is not None and (record.received_at, record.id) >= before:
                        continue
                    if (not statuses or record.status in statuses) and endpoint in (
                        None,
                        record.endpoint,
                    ):
                        found.append(record)
        return found[:limit]

    def rejections(
        self,
        *,
        since: float | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        before: tuple[float, int] | None = None,
    ) -> list[RejectionRecord]:
        """Rejected requests (metadata only), newest first; ``before`` as for
        ``deliveries``."""
        found: list[RejectionRecord] = []
        low = "-inf" if since is None else since
        high = "+inf" if before is None else repr(before[0])
        offset = 0
        with self._errors() as client:
            while len(found) < limit:
                page = client.zrevrangebyscore(self._key("rejections"), high, low, offset, PAGE)
                for member in page:
                    number, _, meta = member.decode().partition(" ")
                    values = json.loads(meta)
                    record = RejectionRecord(int(number), values[8], *values[:8])
                    if before is not None and (record.received_at, record.id) >= before:
                        continue
                    if endpoint in (None, record.endpoint):
                        found.append(record)
                if len(page) < PAGE:
                    break
                offset += PAGE
        return found[:limit]

    def match_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to ``limit`` delivery ids that start with ``prefix`` (two tell ambiguous)."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        found: list[str] = []
        with self._errors() as client:
            for member, _ in client.zscan_iter(self._key("deliveries"), match=pattern):
                found.append(member.decode())
                if len(found) >= limit:
                    break
        return sorted(found)

    def get_rejection(self, rejection_id: int) -> RejectionRecord | None:
        """One rejected request, by the number ``history`` shows after its ``r``."""
        with self._errors() as client:
            for member, _ in client.zscan_iter(
                self._key("rejections"), match=f"{int(rejection_id)} *"
            ):
                number, _, meta = member.decode().partition(" ")
                values = json.loads(meta)
                return RejectionRecord(int(number), values[8], *values[:8])
        return None

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery with headers, body and every attempt; ``delivery_id`` may be a prefix."""
        with self._errors() as client:
            if not client.exists(self._keys(delivery_id)[0]):
                pattern = "".join("\\" + c if c in "*?[]\\" else c for c in delivery_id) + "*"
                matches: list[str] = []
                for member, _ in client.zscan_iter(self._key("deliveries"), match=pattern):
                    matches.append(member.decode())
                    if len(matches) > 1:
                        return None
                if not matches:
                    return None
                delivery_id = matches[0]
            key, log = self._keys(delivery_id)
            pipe = client.pipeline(transaction=True)
            pipe.hmget(key, (*_SUMMARY, "headers", "body"))
            pipe.lrange(log, 0, -1)
            values, attempts = pipe.execute()
        if values[0] is None:
            return None
        return dataclasses.replace(
            _summary(values[: len(_SUMMARY)]),
            headers=decode_headers(values[-2]),
            body=bytes(values[-1]),
            attempt_log=tuple(AttemptRecord(**json.loads(raw)) for raw in attempts),
        )

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each status."""
        totals: dict[str, int] = {}
        with self._errors() as client:
            ids = list(self._ids(client))
            pipe = client.pipeline(transaction=False)
            for delivery_id in ids:
                pipe.hget(self._keys(delivery_id)[0], "status")
            for status in pipe.execute():
                if status is not None:
                    totals[status.decode()] = totals.get(status.decode(), 0) + 1
        return totals

    def purge(
        self,
        older_than: float = DEFAULT_RETENTION_SECONDS,
        max_rejections: int | None = None,
    ) -> int:
        """Forget processed deliveries and rejections older than ``older_than`` seconds.
        Queued, retrying and dead deliveries are kept until replayed; dedupe keys expire alone."""
        cutoff = time.time() - older_than
        cap = self.max_rejections if max_rejections is None else max_rejections
        with self._errors() as client:
            old = list(self._ids(client, "-inf", cutoff))  # updated_at >= received_at
            pipe = client.pipeline(transaction=False)
            for delivery_id in old:
                keys = [*self._keys(delivery_id), self._key("deliveries")]
                self._scripts["purge"](keys=keys, args=[delivery_id, cutoff], client=pipe)
            gone = sum(pipe.execute())
            rejections = self._key("rejections")
            gone += client.zremrangebyscore(rejections, "-inf", f"({cutoff!r}")
            gone += client.zremrangebyrank(rejections, 0, -(cap + 1))
        return int(gone)


def from_url(url: str, **options: Any) -> RedisStore:
    """``from_url("redis://127.0.0.1:6379/1")``: a store on that Redis database."""
    return RedisStore(url, **options)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def _summary(values: list[Any]) -> DeliveryRecord:
    row = dict(zip(_SUMMARY, values, strict=True))
    return DeliveryRecord(
        id=row["id"].decode(),
        endpoint=row["endpoint"].decode(),
        scheme=row["scheme"].decode(),
        event_type=_text(row["event_type"]),
        dedupe_key=_text(row["dedupe_key"]),
        received_at=float(row["received_at"]),
        status=row["status"].decode(),
        attempts=int(row["attempts"]),
        run_at=float(row["run_at"]),
        last_error=_text(row["last_error"]),
        updated_at=float(row["updated_at"]),
        body_size=int(row["body_size"]),
        body_sha256=row["body_sha256"].decode(),
    )


def _redacted(url: str) -> str:
    head, at, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if at else url
