"""Ends a WSGI body read at the request deadline, on servers that expose the socket (gunicorn).

A WSGI body read blocks its worker thread. A per-read socket timeout alone does not bound it: a
client trickling a byte now and then satisfies every read, and gunicorn's body reader loops
until it has all it was asked for. So besides a socket timeout for the time left (which ends a
read from a client that sends nothing), one watchdog thread per process shrinks the socket's
timeout to almost nothing when a request's deadline passes: the read in progress then ends at
the next byte or at once, and gunicorn closes the connection after the 408 (a body that failed
to read leaves it unusable).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time

__all__ = ["SocketDeadline"]

# What the watchdog sets at the deadline: a read waiting for more bytes gives up at once.
_EXPIRED_TIMEOUT = 0.001


class SocketDeadline:
    """Arms the watchdog for one body read on ``sock``; ``close()`` disarms it and puts the
    socket's timeout back."""

    __slots__ = ("_entry", "_prior", "_sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._prior = sock.gettimeout()
        self._entry = _watchdog().arm(deadline, sock)

    def before_read(self, deadline: float) -> None:
        """Bound the next read by the time left (a silent client then times out)."""
        with contextlib.suppress(OSError):
            if not self._entry.fired:
                self._sock.settimeout(max(_EXPIRED_TIMEOUT, deadline - time.monotonic()))

    def close(self) -> None:
        """Disarm; the socket gets back the timeout it had before."""
        _watchdog().disarm(self._entry)
        with contextlib.suppress(OSError):
            self._sock.settimeout(self._prior)


class _Entry:
    __slots__ = ("cancelled", "deadline", "fired", "sock")

    def __init__(self, deadline: float, sock: socket.socket) -> None:
        self.deadline, self.sock = deadline, sock
        self.cancelled = self.fired = False


class _Watchdog:
    """One daemon thread and a heap of armed reads, earliest deadline first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._thread = threading.Thread(
            target=self._run, name="webhook-guard-body-deadline", daemon=True
        )
        self._thread.start()

    def arm(self, deadline: float, sock: socket.socket) -> _Entry:
        entry = _Entry(deadline, sock)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), entry))
            if self._heap[0][2] is entry:
                self._cond.notify()
        return entry

    def disarm(self, entry: _Entry) -> None:
        # Under the lock: once this returns, the watchdog never touches the socket again (the
        # caller may hand it back to the server with its old timeout).
        with self._cond:
            entry.cancelled = True

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)[2]
                entry.fired = True
                with contextlib.suppress(OSError):
                    entry.sock.settimeout(_EXPIRED_TIMEOUT)


_lock = threading.Lock()
_instance: tuple[int, _Watchdog] | None = None


def _watchdog() -> _Watchdog:
    """This process's watchdog (a forked child starts its own: threads do not survive fork)."""
    global _instance
    pid = os.getpid()
    current = _instance
    if current is None or current[0] != pid:
        with _lock:
            current = _instance
            if current is None or current[0] != pid:
                current = (pid, _Watchdog())
                _instance = current
    return current[1]
