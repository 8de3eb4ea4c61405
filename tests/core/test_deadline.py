"""webhook_guard.core.deadline and the reads and writes it bounds: a body trickled or stalled
past the request deadline is refused with 408 (on a real socket, as gunicorn exposes it), and
a store held by another writer answers by the request's deadline, not its own busy timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webhook_guard.core.body import ASGIMessage, read_asgi_body, read_wsgi_body
from webhook_guard.core.deadline import current_deadline, deadline_after, remaining
from webhook_guard.core.delivery import Delivery, new_delivery_id
from webhook_guard.exceptions import QueueUnavailable, RequestTimeout
from webhook_guard.queues.sqlite import SQLiteQueue

BODY = b"x" * 400


@contextlib.contextmanager
def write_lock_held(path: Path, seconds: float = 2.0) -> Iterator[threading.Event]:
    """Another connection holds the write lock for ``seconds``, then lets go: a write that
    waited for it would succeed, so only one refused in time raises. Yields an event set once
    it let go."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        holder.execute("ROLLBACK")
        released.set()

    timer = threading.Timer(seconds, release)
    timer.start()
    try:
        yield released
    finally:
        timer.join()
        holder.close()


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of TCP sockets: (server side, client side)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    yield server, client
    server.close()
    client.close()


def wsgi_environ(server: socket.socket, length: int) -> dict[str, Any]:
    # makefile('rb').read(n) loops until it has n bytes, as gunicorn's body reader does: a
    # per-read timeout alone would never end it while bytes keep trickling in.
    return {
        "wsgi.input": server.makefile("rb"),
        "CONTENT_LENGTH": str(length),
        "gunicorn.socket": server,
    }


def trickle(client: socket.socket, body: bytes, every: float, stop: threading.Event) -> None:
    for byte in body:
        if stop.wait(every):
            return
        try:
            client.sendall(bytes([byte]))
        except OSError:
            return


def test_deadline_after_nests_to_the_earlier_and_is_per_thread() -> None:
    assert current_deadline() is None and remaining() is None
    seen: list[float | None] = []
    with deadline_after(10.0) as outer:
        with deadline_after(60.0) as inner:
            assert inner == outer  # a nested, later deadline cannot extend the request's
            other = threading.Thread(target=lambda: seen.append(current_deadline()))
            other.start()
            other.join()
        left = remaining()
        assert left is not None and 0 < left <= 10.0
    assert current_deadline() is None
    assert seen == [None]  # another thread's request has its own deadline


def test_a_trickled_body_is_cut_off_at_the_deadline(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connection
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(client, BODY, 0.05, stop))
    sender.start()
    try:
        with pytest.raises(RequestTimeout):
            read_wsgi_body(wsgi_environ(server, len(BODY)), 1000, time.monotonic() + 0.5)
        cut_off_while_sending = sender.is_alive()
    finally:
        stop.set()
        sender.join()
    assert cut_off_while_sending  # 400 bytes at 20/s: far from complete when refused
    assert server.gettimeout() is None  # the server gets its blocking socket back


def test_a_silent_client_is_cut_off_at_the_deadline(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connection
    client.sendall(BODY[:10])
    with pytest.raises(RequestTimeout):
        read_wsgi_body(wsgi_environ(server, len(BODY)), 1000, time.monotonic() + 0.3)
    assert server.gettimeout() is None


def test_a_body_that_arrives_in_time_is_read_and_the_socket_left_as_it_was(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connection
    server.settimeout(30.0)
    client.sendall(BODY)
    assert read_wsgi_body(wsgi_environ(server, len(BODY)), 1000, time.monotonic() + 5) == BODY
    assert server.gettimeout() == 30.0
    # The watchdog is disarmed: after the deadline it does not touch the socket.
    time.sleep(0.1)
    assert server.gettimeout() == 30.0


def test_a_deadline_already_passed_reads_nothing() -> None:
    class Unreadable:
        def read(self, size: int) -> bytes:
            raise AssertionError("read after the deadline")

    environ = {"wsgi.input": Unreadable(), "CONTENT_LENGTH": "4"}
    with pytest.raises(RequestTimeout):
        read_wsgi_body(environ, 1000, time.monotonic() - 1)


def test_the_request_deadline_applies_without_an_explicit_one(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connection
    client.sendall(BODY[:10])
    with deadline_after(0.3), pytest.raises(RequestTimeout):
        read_wsgi_body(wsgi_environ(server, len(BODY)), 1000)


def test_an_asgi_body_still_arriving_at_the_deadline_is_408() -> None:
    async def receive() -> ASGIMessage:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def read() -> bytes:
        with deadline_after(0.3):
            return await read_asgi_body(receive, None, 10_000)

    with pytest.raises(RequestTimeout):
        asyncio.run(read())


def delivery(n: int) -> Delivery:
    return Delivery(
        id=new_delivery_id(),
        endpoint="ep",
        body=b"{}",
        dedupe_key=f"k{n}",
        received_at=time.time(),
        event_type="e",
    )


def test_a_held_store_answers_by_the_request_deadline_not_its_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.db"
    queue = SQLiteQueue(str(path), busy_timeout_ms=30_000)
    queue.enqueue(delivery(0))  # the schema exists
    with write_lock_held(path) as released:
        with deadline_after(0.3), pytest.raises(QueueUnavailable):
            queue.enqueue(delivery(1))
        refused_while_held = not released.is_set()
    assert refused_while_held  # by the request's deadline, not after the 30 s busy timeout
    assert queue.enqueue(delivery(1)).status.value == "new"
    queue.close()


def test_aenqueue_takes_its_deadline_in_the_request_task(tmp_path: Path) -> None:
    """The deadline is read in the event loop, so time spent waiting for an executor thread
    counts: with the deadline already spent, a held store gets no further patience."""
    path = tmp_path / "q.db"
    queue = SQLiteQueue(str(path), busy_timeout_ms=30_000)
    queue.enqueue(delivery(0))

    async def send() -> None:
        with deadline_after(0.2):
            await queue.aenqueue(delivery(1))

    with write_lock_held(path) as released:
        with pytest.raises(QueueUnavailable):
            asyncio.run(send())
        refused_while_held = not released.is_set()
    assert refused_while_held
    queue.close()


def test_a_broker_queue_reserves_by_the_request_deadline_from_the_event_loop(
    tmp_path: Path,
) -> None:
    """A broker queue's store wait, run in an executor thread, still ends by the request's
    deadline. The broker plays no part in this (the store is what waits), so a publish that
    only records the envelope stands in for one."""
    from webhook_guard.queues.broker import BrokerQueue

    published: list[dict[str, Any]] = []

    class Recording(BrokerQueue):
        engine = "recording"

        def publish(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
            published.append(envelope)

    path = tmp_path / "store.db"
    store = SQLiteQueue(str(path), busy_timeout_ms=30_000)
    queue = Recording(store)
    queue.enqueue(delivery(0))  # the schema exists

    async def send() -> None:
        with deadline_after(0.3):
            await queue.aenqueue(delivery(1))

    with write_lock_held(path) as released:
        with pytest.raises(QueueUnavailable):
            asyncio.run(send())
        refused_while_held = not released.is_set()
    assert refused_while_held and len(published) == 1  # only the first, before the lock
    store.close()


def test_an_asgi_body_read_cancelled_by_someone_else_stays_cancelled() -> None:
    """The deadline cancels the reading task from a timer; a cancel that is not the
    deadline's (the server dropping the request) must reach the caller as CancelledError, and
    after a deadline the task is left uncancelled (it goes on to send the 408)."""

    async def never() -> ASGIMessage:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def cancelled_from_outside() -> None:
        async def read() -> bytes:
            return await read_asgi_body(never, None, 10, deadline=time.monotonic() + 30)

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def deadline_then_more_work() -> str:
        with pytest.raises(RequestTimeout):
            await read_asgi_body(never, None, 10, deadline=time.monotonic() + 0.05)
        task = asyncio.current_task()
        assert task is not None and getattr(task, "cancelling", lambda: 0)() == 0
        await asyncio.sleep(0.01)  # not cancelled again: the task goes on
        return "answered"

    asyncio.run(cancelled_from_outside())
    assert asyncio.run(deadline_then_more_work()) == "answered"


def test_a_store_waits_its_budget_or_the_request_deadline_but_never_less_than_the_minimum() -> None:
    """store_deadline: the budget outside a request, the request's deadline when sooner, and
    MIN_STORE_WAIT_SECONDS from now when the request's deadline has passed."""
    from webhook_guard.core.deadline import MIN_STORE_WAIT_SECONDS, store_deadline

    now = time.monotonic()
    assert store_deadline(5.0) - now == pytest.approx(5.0, abs=0.05)
    with deadline_after(0.5) as request:
        assert store_deadline(5.0) == request
        assert store_deadline(0.2) < request
    with deadline_after(0.0):
        assert store_deadline(5.0) - time.monotonic() == pytest.approx(
            MIN_STORE_WAIT_SECONDS, abs=0.05
        )
