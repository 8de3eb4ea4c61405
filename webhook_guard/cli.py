"""``webhook-guard`` (also ``python -m webhook_guard``): the demo, the worker and the history.

Exit codes: 0 success, 1 a problem was found, 2 a usage error. ``--json`` output goes to
stdout only; notes go to stderr. ``--db`` defaults to ``WEBHOOK_GUARD_DB``, then
``./webhook_guard.db``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from webhook_guard.core.config import DEFAULT_DB_PATH
from webhook_guard.core.guard import Guard
from webhook_guard.exceptions import WebhookGuardError
from webhook_guard.history import format_table, history_rows
from webhook_guard.queues.sqlite import STATUSES, SQLiteQueue

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        result: int = args.run(args)
        return result
    except UsageError as error:
        print(f"webhook-guard {args.command}: {error}", file=sys.stderr)
        return 2
    except WebhookGuardError as error:
        print(f"webhook-guard {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhook-guard",
        description="Receive webhooks correctly: verify raw bytes, store durably, answer 200, "
        "process in a worker. Run 'webhook-guard demo' to see it work.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="serve the Flask sample under gunicorn and send it signed deliveries",
        description="Starts the Flask sample app under gunicorn on 127.0.0.1, sends a valid, "
        "a tampered, a duplicate, a twice-failing and an always-failing delivery, waits for the "
        "worker and prints the delivery history.",
    )
    demo.add_argument("--dir", help="keep the database and logs here (default: a temp dir)")
    demo.add_argument("--port", type=int, default=0, help="port to serve on (default: any free)")
    demo.set_defaults(run=_run_demo)

    worker = commands.add_parser(
        "worker",
        help="process queued deliveries of a Guard in this process",
        description="Consume the embedded SQLite queue of the Guard at TARGET (module:attribute, "
        "e.g. sample_apps.flask_app:guard), running its handlers with retries. Stops after the "
        "delivery in hand on SIGTERM or Ctrl-C. Run it from your project root with the same "
        "environment as the web app.",
    )
    worker.add_argument("target", help="module:attribute of your Guard")
    worker.add_argument("--lease", type=float, help="seconds a claim lasts without a heartbeat")
    worker.add_argument("--threads", type=int, default=1, help="deliveries processed at once")
    worker.add_argument("--burst", action="store_true", help="exit once nothing is due")
    worker.set_defaults(run=_run_worker)

    history = commands.add_parser(
        "history",
        help="list deliveries and rejected requests, newest first",
        description="The delivery history. --failed lists rejected requests (with their reason "
        "code) and accepted deliveries that are retrying or dead.",
    )
    _add_db(history)
    history.add_argument(
        "--failed", action="store_true", help="only what failed, from the sender's side"
    )
    history.add_argument("--status", action="append", default=[], choices=[*STATUSES, "rejected"])
    history.add_argument("--since", help="only newer than this, e.g. 30m, 1h, 7d")
    history.add_argument("--endpoint", help="only this endpoint")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--json", action="store_true", help="JSON lines on stdout")
    history.set_defaults(run=_run_history)

    show = commands.add_parser("show", help="one delivery: headers, body preview, every attempt")
    _add_db(show)
    show.add_argument("id", help="delivery id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_run_show)

    replay = commands.add_parser(
        "replay", help="queue deliveries again with a fresh attempt budget"
    )
    _add_db(replay)
    replay.add_argument("ids", nargs="*", help="delivery ids")
    replay.add_argument("--failed", action="store_true", help="every retrying or dead delivery")
    replay.add_argument("--dead", action="store_true", help="every dead delivery")
    replay.set_defaults(run=_run_replay)

    purge = commands.add_parser("purge", help="forget processed deliveries and old rejections")
    _add_db(purge)
    purge.add_argument("--older-than", default="30d", help="age, e.g. 12h, 30d (default 30d)")
    purge.set_defaults(run=_run_purge)
    return parser


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("WEBHOOK_GUARD_DB") or DEFAULT_DB_PATH,
        help="the SQLite database (default: $WEBHOOK_GUARD_DB, else ./webhook_guard.db)",
    )


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a duration like 30s, 15m, 1h, 7d or 2w")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _open_existing(path: str) -> SQLiteQueue:
    if not os.path.exists(path):
        raise UsageError(f"no database at {path}; pass --db or set WEBHOOK_GUARD_DB")
    return SQLiteQueue(path)


def _run_demo(args: argparse.Namespace) -> int:
    from webhook_guard.demo.run import run_demo

    return run_demo(directory=args.dir, port=args.port)


def load_guard(target: str) -> Guard:
    """The Guard at ``module:attribute``, imported from the current directory."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"{target!r} must be module:attribute, e.g. sample_apps.flask_app:guard")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"cannot import {module_name!r}: {error}") from error
    guard = getattr(module, attribute, None)
    if not isinstance(guard, Guard):
        raise UsageError(f"{target} is {type(guard).__name__}, not a webhook_guard Guard")
    return guard


def _run_worker(args: argparse.Namespace) -> int:
    from webhook_guard.worker import Worker

    if args.threads < 1:
        raise UsageError("--threads must be at least 1")
    guard = load_guard(args.target)
    worker = Worker(guard, lease_seconds=args.lease)
    if args.burst:
        done = worker.drain(timeout=float("inf"))
        print(f"processed {done} attempt(s); nothing left due", file=sys.stderr)
        return 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"webhook-guard worker: {guard!r} on {guard.queue!r}, {args.threads} thread(s)",
        file=sys.stderr,
    )
    threads = [
        threading.Thread(target=worker.run, args=(stop,), daemon=True) for _ in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(0.2)
    print("webhook-guard worker: stopped", file=sys.stderr)
    return 0


def _run_history(args: argparse.Namespace) -> int:
    queue = _open_existing(args.db)
    since = time.time() - parse_duration(args.since) if args.since else None
    rows = history_rows(
        queue,
        failed=args.failed,
        statuses=tuple(args.status),
        since=since,
        endpoint=args.endpoint,
        limit=args.limit,
    )
    if args.json:
        for row in rows:
            print(json.dumps(row.as_dict()))
    elif rows:
        print(format_table(rows))
    else:
        print("no deliveries match", file=sys.stderr)
    return 0


def _run_show(args: argparse.Namespace) -> int:
    queue = _open_existing(args.db)
    record = queue.get(args.id)
    if record is None:
        print(f"no single delivery matches {args.id!r}", file=sys.stderr)
        return 1
    details: dict[str, Any] = {
        "id": record.id,
        "endpoint": record.endpoint,
        "scheme": record.scheme,
        "event": record.event_type,
        "dedupe_key": record.dedupe_key,
        "received_at": record.received_at,
        "status": record.status,
        "attempts": record.attempts,
        "last_error": record.last_error,
        "body_size": record.body_size,
        "body_sha256": record.body_sha256,
        "headers": [list(h) for h in record.headers],
        "body_preview": record.body[:2000].decode("utf-8", "replace"),
        "attempt_log": [a.__dict__ for a in record.attempt_log],
    }
    if args.json:
        print(json.dumps(details))
        return 0
    for key in (
        "id",
        "endpoint",
        "scheme",
        "event",
        "dedupe_key",
        "status",
        "attempts",
        "last_error",
        "body_size",
        "body_sha256",
    ):
        print(f"{key:12} {details[key]}")
    print("headers:")
    for name, value in record.headers:
        print(f"  {name}: {value}")
    print(f"body ({record.body_size} bytes, first 2000 shown):\n  {details['body_preview']}")
    for attempt in record.attempt_log:
        print(f"attempt {attempt.attempt}: {attempt.outcome or 'running'} {attempt.error or ''}")
        if attempt.traceback:
            print("  " + attempt.traceback.rstrip().replace("\n", "\n  "))
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    queue = _open_existing(args.db)
    if args.ids and (args.failed or args.dead):
        raise UsageError("give delivery ids or --failed/--dead, not both")
    if args.ids:
        count = queue.replay(list(args.ids))
    elif args.failed or args.dead:
        count = queue.replay(statuses=("dead",) if args.dead else ("retrying", "dead"))
    else:
        raise UsageError("give delivery ids, --failed or --dead")
    print(f"queued {count} delivery(ies) again; a running worker picks them up", file=sys.stderr)
    return 0 if count else 1


def _run_purge(args: argparse.Namespace) -> int:
    queue = _open_existing(args.db)
    gone = queue.purge(older_than=parse_duration(args.older_than))
    print(f"purged {gone} row(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
