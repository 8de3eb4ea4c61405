"""Helpers shared by the benchmark scripts: machine facts, Markdown tables, statistics.

Benchmarks are run by hand (``benchmarks/run_all.sh``), never by the test suite.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import platform
import sqlite3
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import TypeVar

T = TypeVar("T")

PACKAGES = (
    "webhook-guard",
    "flask",
    "werkzeug",
    "django",
    "starlette",
    "fastapi",
    "gunicorn",
    "uvicorn",
    "httptools",
    "uvloop",
    "standardwebhooks",
    "svix",
    "stripe",
    "slack-sdk",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def versions(names: Iterable[str] = PACKAGES) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def machine_line() -> str:
    flags = cpu_flags()
    accel = ",".join(f for f in ("sha_ni", "avx2", "avx512f") if f in flags) or "-"
    return (
        f"nproc {os.cpu_count()}, CPU {cpu_model()} ({accel}), Python {sys.version.split()[0]}, "
        f"{ssl.OPENSSL_VERSION}, SQLite {sqlite3.sqlite_version}; {versions()}; {source_line()}"
    )


def source_line() -> str:
    """Which webhook_guard code was measured: the commit, and whether the package had local edits
    (other engineers work in the same tree)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", root, *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [
        line for line in git("status", "--porcelain", "--", "webhook_guard").splitlines() if line
    ]
    note = (
        f", plus uncommitted changes to {len(dirty)} file(s) under webhook_guard/" if dirty else ""
    )
    return f"webhook_guard at commit {head}{note}"


def loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def ack_body() -> bytes:
    """The 1 KiB JSON event the ack-path benchmarks send (valid JSON, exactly 1024 bytes)."""
    head = b'{"event":"invoice.paid","id":"evt_1NqX5e2eZvKYlo2C","data":{"object":{"lines":['
    tail = b'],"pad":"%s"}}}'
    items = b",".join(
        b'{"id":"il_%06d","amount":1999,"currency":"usd","quantity":1}' % i for i in range(10)
    )
    body = head + items + tail % (b"p" * (1024 - len(head) - len(items) - len(tail) + 2))
    assert len(body) == 1024
    return body


BENCH_SECRET = "bench-secret-0123456789abcdef0123456789"
BENCH_EVENT = "invoice.paid"
_delivery_counter = iter(range(10**12))
_RUN_ID = os.urandom(6).hex()  # 12 hex chars: no two processes make the same body
UID_WIDTH = 23  # "<run id>-<10 digits>", at the start of ack_body()'s padding


def distinct_ack_body(i: int, run_id: str = _RUN_ID) -> bytes:
    """``ack_body()`` with ``<run_id>-<i>`` at the start of its padding, still exactly 1024 bytes.
    The cloudaipilot dedupe key is the sha256 of the body, so each body is a new delivery."""
    body = ack_body()
    at = body.index(b'"pad":"') + len(b'"pad":"')
    uid = f"{run_id}-{i:010d}".encode()
    assert len(uid) == UID_WIDTH and body[at : at + UID_WIDTH] == b"p" * UID_WIDTH
    return body[:at] + uid + body[at + UID_WIDTH :]


def signed_ack_request() -> tuple[list[tuple[str, str]], bytes]:
    """A new signed request: a distinct body and its headers (so every enqueue is a new
    delivery, the real cost, never the duplicate path)."""
    body = distinct_ack_body(next(_delivery_counter))
    return signed_ack_headers(body), body


def signed_ack_headers(body: bytes) -> list[tuple[str, str]]:
    """A signed cloudaipilot request's headers as an adapter passes them, each call with a new
    (unsigned) delivery id. The dedupe key is the body's sha256: only a new body is a new
    delivery (``signed_ack_request``)."""
    signature = "sha256=" + hmac.new(BENCH_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return [
        ("Host", "127.0.0.1:8000"),
        ("User-Agent", "CloudAIPilot-Hookshot/1.0"),
        ("Accept", "*/*"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("X-CloudAIPilot-Event", BENCH_EVENT),
        ("X-CloudAIPilot-Signature", signature),
        ("X-CloudAIPilot-Delivery", f"d-{next(_delivery_counter)}"),
    ]


def fs_type(path: str) -> str:
    """The filesystem a path is on (fsync on tmpfs would make "power" durability free)."""
    target = os.path.abspath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                mount = parts[1]
                inside = mount == "/" or target == mount or target.startswith(mount + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, parts[2]
    except OSError:
        pass
    return kind


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]], right: int = 1) -> str:
    """A Markdown table; columns from index ``right`` on are right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i < right else "---:" for i in range(len(header))) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def paired_ratio(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Median of per-repetition ratios x/y (same repetition, so drifts cancel)."""
    return statistics.median(a / b for a, b in zip(xs, ys, strict=True))


def rotated(items: Sequence[T], rep: int, step: int = 1) -> list[T]:
    """Every repetition starts elsewhere, and every other one runs backwards."""
    k = len(items)
    start = (rep * step) % k
    order = list(items[start:]) + list(items[:start])
    if rep % 2:
        order.reverse()
    return order


def yes_no(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


# ------------------------------------------------------------------------------- noise
# Other sessions share this 2-core machine. These helpers measure how much CPU *other*
# processes used while a benchmark ran, so that a noisy sample is visible in the report.

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float:
    """CPU-seconds all cores spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK


class CpuAccount:
    """Foreign CPU over a span, for a process without live children: machine busy time
    minus this process's own CPU time. Cheap (no thread)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _busy_seconds()
        self.own0 = time.process_time()

    def foreign_cores(self) -> float:
        wall = time.monotonic() - self.t0
        busy = _busy_seconds() - self.busy0
        own = time.process_time() - self.own0
        return max(0.0, busy - own) / wall if wall > 0 else 0.0


def _proc_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (ppid, cpu seconds, command) for every process."""
    table: dict[int, tuple[int, float, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                raw = f.read()
        except OSError:
            continue
        lpar, rpar = raw.find("("), raw.rfind(")")
        rest = raw[rpar + 2 :].split()
        try:
            ppid = int(rest[1])
            cpu = (int(rest[11]) + int(rest[12])) / _TICK
        except (IndexError, ValueError):
            continue
        table[int(entry)] = (ppid, cpu, raw[lpar + 1 : rpar])
    return table


class NoiseSampler:
    """Background thread: every ``interval`` s, the CPU used by processes outside this
    process's tree (children such as servers and wrk are ours). Use for orchestrating
    scripts only: the thread takes the GIL for a few ms per tick."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (monotonic, foreign cpu-seconds so far)
        self.by_command: dict[str, float] = {}
        self._last: dict[int, float] = {}
        self._foreign_total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="noise-sampler", daemon=True)

    def __enter__(self) -> NoiseSampler:
        self._tick(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._tick()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()

    def _tick(self, first: bool = False) -> None:
        table = _proc_table()
        me = os.getpid()
        ours: set[int] = set()
        for pid in table:
            chain, p = [], pid
            while p > 1 and p not in ours and p != me:
                chain.append(p)
                p = table[p][0] if p in table else 0
            if p == me or p in ours:
                ours.update(chain)
        ours.add(me)
        seen: dict[int, float] = {}
        for pid, (_, cpu, comm) in table.items():
            seen[pid] = cpu
            if first or pid in ours:
                continue
            delta = cpu - self._last.get(pid, 0.0)  # a pid born since the last tick: all of it
            if delta > 0:
                self._foreign_total += delta
                self.by_command[comm] = self.by_command.get(comm, 0.0) + delta
        self._last = seen
        self.samples.append((time.monotonic(), self._foreign_total))

    def foreign_cores(self, t0: float, t1: float) -> float:
        """Average cores used by foreign processes between two ``time.monotonic()`` stamps
        (resolution: one tick)."""

        before = next((s for s in reversed(self.samples) if s[0] <= t0), self.samples[0])
        after = next((s for s in self.samples if s[0] >= t1), self.samples[-1])
        return (after[1] - before[1]) / max(after[0] - before[0], 1e-9)

    def top(self, n: int = 4) -> str:
        ranked = sorted(self.by_command.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{name} {cpu:.1f} s" for name, cpu in ranked) or "none"

    @property
    def total(self) -> float:
        return self._foreign_total
