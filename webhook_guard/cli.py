"""``webhook-guard`` (also ``python -m webhook_guard``): the demo, the worker and the history.

Exit codes: 0 success, 1 a problem was found, 2 a usage error. ``--json`` output goes to
stdout only; notes go to stderr. ``--db`` defaults to ``WEBHOOK_GUARD_DB``, then
``./webhook_guard.db``; ``--store URL`` reads a shared store instead (``redis://...`` or
``postgresql://...``, opened through ``webhook_guard.core.wiring``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from webhook_guard._version import __version__
from webhook_guard.core.config import DEFAULT_DB_PATH
from webhook_guard.core.consumer import PRESENCE_EVERY_SECONDS
from webhook_guard.core.guard import Guard
from webhook_guard.core.wiring import is_postgres_url, open_store
from webhook_guard.exceptions import WebhookGuardError
from webhook_guard.history import cursor, format_table, history_rows, utc_time
from webhook_guard.queues.sqlite import STATUSES, SQLiteQueue
from webhook_guard.textsafe import printable

if TYPE_CHECKING:
    from webhook_guard.queues.postgres import PostgresQueue
    from webhook_guard.stores.redis import RedisStore

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``webhook-guard`` command line with ``argv`` (default ``sys.argv[1:]``); returns the
    exit status."""
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
    except (WebhookGuardError, NotFound) as error:
        print(f"webhook-guard {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``webhook-guard`` command."""
    parser = argparse.ArgumentParser(
        prog="webhook-guard",
        description="Receive webhooks correctly: verify raw bytes, store durably, answer 200, "
        "process in a worker. Run 'webhook-guard demo' to see it work.",
    )
    parser.add_argument("--version", action="version", version=f"webhook-guard {__version__}")
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
        help="process queued deliveries of your Guards in this process",
        description="Consume the SQLite or PostgreSQL queue of the Guards named by TARGETs, "
        "running each delivery with the handlers of the Guard whose endpoint recorded it, with "
        "retries. A TARGET is module:attribute (one Guard, e.g. sample_apps.flask_app:guard) "
        "or a module (every Guard defined in it). Deliveries of other endpoints are left for "
        "the process that serves them. With DJANGO_SETTINGS_MODULE set, Django is set up "
        "first; Flask handlers run inside their app's context. Stops after the delivery in "
        "hand on SIGTERM or Ctrl-C (a second one stops at once; the lease then gives the "
        "delivery back). Exits non-zero when it stops for any other reason. Run it from your "
        "project root with the same environment as the web app.",
    )
    worker.add_argument(
        "targets", nargs="+", metavar="TARGET", help="module:attribute of a Guard, or a module"
    )
    worker.add_argument("--lease", type=float, help="seconds a claim lasts without a heartbeat")
    worker.add_argument("--threads", type=int, default=1, help="deliveries processed at once")
    worker.add_argument("--burst", action="store_true", help="exit once nothing is due")
    worker.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="what the worker logs to stderr (default info: one line per finished delivery)",
    )
    worker.set_defaults(run=_run_worker)

    history = commands.add_parser(
        "history",
        help="list deliveries and rejected requests, newest first",
        description="The delivery history. --failed lists rejected requests (with their reason "
        "code) and accepted deliveries that are retrying or dead.",
    )
    _add_db(history)
    _add_store(history)
    history.add_argument(
        "--failed", action="store_true", help="only what failed, from the sender's side"
    )
    history.add_argument("--status", action="append", default=[], choices=[*STATUSES, "rejected"])
    history.add_argument("--since", help="only newer than this, e.g. 30m, 1h, 7d")
    history.add_argument("--endpoint", help="only this endpoint")
    history.add_argument("--limit", type=int, default=50, help="rows per page (default 50)")
    history.add_argument(
        "--before",
        metavar="CURSOR",
        help="the next page: rows after the cursor the previous page printed",
    )
    history.add_argument("--json", action="store_true", help="JSON lines on stdout")
    history.set_defaults(run=_run_history)

    show = commands.add_parser("show", help="one delivery: headers, body preview, every attempt")
    _add_db(show)
    _add_store(show)
    show.add_argument(
        "id", help="delivery id (a unique prefix is enough), or rN for a rejected request"
    )
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_run_show)

    replay = commands.add_parser(
        "replay", help="queue deliveries again with a fresh attempt budget"
    )
    _add_db(replay)
    _add_store(replay)
    replay.add_argument(
        "--app",
        metavar="MODULE:GUARD",
        help="replay through this Guard's queue (its own store; --db/--store are ignored): "
        "needed for deliveries that a broker carries (Celery, RQ, Dramatiq, arq)",
    )
    replay.add_argument("ids", nargs="*", help="delivery ids (a unique prefix is enough)")
    replay.add_argument("--failed", action="store_true", help="every retrying or dead delivery")
    replay.add_argument("--dead", action="store_true", help="every dead delivery")
    replay.add_argument(
        "--status",
        action="append",
        default=[],
        choices=["retrying", "dead", "ignored", "processed"],
        help="every delivery in this status (repeatable)",
    )
    replay.add_argument("--endpoint", help="only deliveries of this endpoint")
    replay.add_argument("--since", help="only deliveries received since, e.g. 30m, 1h, 7d")
    replay.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed; change nothing"
    )
    replay.set_defaults(run=_run_replay)

    purge = commands.add_parser("purge", help="forget processed deliveries and old rejections")
    _add_db(purge)
    _add_store(purge)
    purge.add_argument("--older-than", default="30d", help="age, e.g. 12h, 30d (default 30d)")
    purge.set_defaults(run=_run_purge)

    dashboard = commands.add_parser(
        "dashboard",
        help="serve the delivery history as web pages on 127.0.0.1 (filters, chart, replay)",
        description="Serve the delivery history of --db as web pages: failed deliveries "
        "first, filters by status, endpoint and time, a page per delivery and a Replay button. "
        "Only this machine may connect: it has no login of its own and shows request bodies "
        "and headers. Elsewhere, use an SSH tunnel or mount it in your app behind its login "
        "(docs/dashboard.md).",
    )
    _add_db(dashboard)
    _add_store(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="a loopback address (default)")
    dashboard.add_argument("--port", type=int, default=8089, help="default 8089; 0 picks one")
    dashboard.add_argument("--read-only", action="store_true", help="no Replay buttons")
    dashboard.add_argument(
        "--i-know-this-is-public",
        dest="public",
        action="store_true",
        help="allow a non-loopback --host and let in every client: only behind a proxy that "
        "authenticates",
    )
    dashboard.set_defaults(run=_run_dashboard)
    _add_diagnose_commands(commands)
    return parser


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("WEBHOOK_GUARD_DB") or DEFAULT_DB_PATH,
        help="the SQLite database (default: $WEBHOOK_GUARD_DB, else ./webhook_guard.db)",
    )


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        help="use a shared store instead of --db: redis://127.0.0.1:6379/1 or "
        "postgresql://user@host:5432/db",
    )


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``15m``, ``2h``, ``7d`` or ``1w``; ``UsageError``
    otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a duration like 30s, 15m, 1h, 7d or 2w")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _open_existing(
    path: str, store: str | None = None
) -> SQLiteQueue | RedisStore | PostgresQueue:
    if store and is_postgres_url(store):
        try:
            opened: PostgresQueue = open_store(store)  # type: ignore[assignment]
        except ImportError as error:
            raise UsageError(str(error)) from error
        return opened
    if store:
        if not store.startswith(("redis://", "rediss://", "unix://")):
            raise UsageError(
                f"--store {store!r}: give a redis:// or postgresql:// URL (or use --db for SQLite)"
            )
        try:
            from webhook_guard.stores.redis import RedisStore
        except ImportError as error:
            raise UsageError(str(error)) from error
        return RedisStore(store)
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
    guards, _ = load_targets([target])
    return guards[0]


def load_targets(targets: Sequence[str]) -> tuple[list[Guard], list[ModuleType]]:
    """The Guards that ``targets`` name (``module:attribute`` or a whole ``module``), and the
    modules imported, from the current directory; Django is set up first when configured."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    _setup_django()
    guards: list[Guard] = []
    modules: list[ModuleType] = []
    for target in targets:
        module_name, _, attribute = target.partition(":")
        if not module_name:
            raise UsageError(f"{target!r} must be module:attribute or a module")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise UsageError(f"cannot import {module_name!r}: {error}") from error
        modules.append(module)
        if attribute:
            found = getattr(module, attribute, None)
            if not isinstance(found, Guard):
                raise UsageError(f"{target} is {type(found).__name__}, not a webhook_guard Guard")
            named = [found]
        else:
            named = [value for value in vars(module).values() if isinstance(value, Guard)]
            if not named:
                raise UsageError(f"module {module_name!r} defines no webhook_guard Guard")
        guards += [guard for guard in named if all(guard is not g for g in guards)]
    _prepare_frameworks(guards, modules)
    return guards, modules


def _setup_django() -> None:
    """Django's ORM and app registry must be ready before a module that uses them imports."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    try:
        import django
    except ImportError:
        return
    try:
        django.setup()
    except Exception as error:
        raise UsageError(f"django.setup() failed: {error}") from error


def _prepare_frameworks(guards: Sequence[Guard], modules: Sequence[ModuleType]) -> None:
    """Let each framework in use put handlers in its context (a Flask app context, Django's
    connection handling): its adapter's ``prepare_worker(guards, modules)``."""
    for framework in ("flask", "django"):
        if framework not in sys.modules:
            continue
        try:
            adapter = importlib.import_module(f"webhook_guard.adapters.{framework}")
        except ImportError:
            continue
        prepare = getattr(adapter, "prepare_worker", None)
        if callable(prepare):
            prepare(guards, modules)


def _run_worker(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise UsageError("--threads must be at least 1")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("webhook_guard").setLevel(args.log_level.upper())
    guards, _ = load_targets(args.targets)
    try:
        return run_workers(guards, threads=args.threads, burst=args.burst, lease=args.lease)
    except WebhookGuardError as error:
        raise UsageError(str(error)) from error


def run_workers(
    guards: Sequence[Guard], *, threads: int = 1, burst: bool = False, lease: float | None = None
) -> int:
    """Consume the stores of ``guards`` in this process (one Worker per store, ``threads``
    threads each) until SIGTERM/SIGINT (a second one stops at once) or, with ``burst``, until
    nothing is due. Returns the exit status: 0 for a requested stop, 1 when a consumer thread
    ended unasked. What ``webhook-guard worker`` and ``manage.py webhook_guard_worker`` run."""
    from webhook_guard.core.queue import store_key
    from webhook_guard.worker import Worker

    by_store: dict[str, list[Guard]] = {}
    for guard in guards:
        by_store.setdefault(store_key(guard.queue), []).append(guard)
    workers = [Worker(*group, lease_seconds=lease) for group in by_store.values()]
    if burst:
        done = sum(worker.drain(timeout=float("inf")) for worker in workers)
        print(f"processed {done} attempt(s); nothing left due", file=sys.stderr)
        return 0
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # the second signal: stop now, the lease gives the delivery back
            print("webhook-guard worker: stopped at once", file=sys.stderr)
            os._exit(128 + signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    for worker in workers:
        served = ", ".join(sorted(worker.guards()))
        print(
            f"webhook-guard worker: endpoints {served} on {worker.queue!r}, {threads} thread(s)",
            file=sys.stderr,
        )
    running = [
        threading.Thread(target=worker.run, args=(stop,), daemon=True)
        for worker in workers
        for _ in range(threads)
    ]
    for thread in running:
        thread.start()
    while all(t.is_alive() for t in running) and not stop.is_set():
        running[0].join(0.2)
    if not stop.is_set():
        # A consumer thread ended without being asked: a supervisor must restart us.
        print("webhook-guard worker: a consumer thread stopped unexpectedly", file=sys.stderr)
        return 1
    for thread in running:
        thread.join()
    print("webhook-guard worker: stopped", file=sys.stderr)
    return 0


def _run_history(args: argparse.Namespace) -> int:
    queue = _open_existing(args.db, args.store)
    since = time.time() - parse_duration(args.since) if args.since else None
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    try:
        rows = history_rows(
            queue,
            failed=args.failed,
            statuses=tuple(args.status),
            since=since,
            endpoint=args.endpoint,
            limit=args.limit + 1,  # one more tells whether another page exists
            before=args.before,
        )
    except ValueError as error:  # a cursor that is not one
        raise UsageError(str(error)) from error
    more, rows = len(rows) > args.limit, rows[: args.limit]
    if args.json:
        for row in rows:
            print(json.dumps(row.as_dict()))
    elif rows:
        print(format_table(rows))
    else:
        print("no deliveries match", file=sys.stderr)
    if more:
        print(
            f"more rows: run again with --before {cursor(rows[-1])} (and the same filters)",
            file=sys.stderr,
        )
    return 0


def _run_show(args: argparse.Namespace) -> int:
    queue = _open_existing(args.db, args.store)
    rejected = re.fullmatch(r"r(\d+)", args.id)
    if rejected:
        return _show_rejection(queue, int(rejected.group(1)), args.json)
    record = queue.get(_one_id(queue, args.id))
    if record is None:
        raise NotFound(f"no delivery {args.id!r}")
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
        print(f"{key:12} {printable(str(details[key]), newlines=False)}")
    print("headers:")
    for name, value in record.headers:
        print(f"  {printable(name, newlines=False)}: {printable(value, newlines=False)}")
    preview = printable(details["body_preview"])
    print(f"body ({record.body_size} bytes, first 2000 shown):\n  {preview}")
    for attempt in record.attempt_log:
        outcome = f"{attempt.outcome or 'running'} {attempt.error or ''}"
        print(f"attempt {attempt.attempt}: {printable(outcome, newlines=False)}")
        if attempt.traceback:
            print("  " + printable(attempt.traceback.rstrip()).replace("\n", "\n  "))
    return 0


def _show_rejection(queue: Any, number: int, as_json: bool) -> int:
    """``show rN``: one rejected request (metadata only: its body was never stored)."""
    record = queue.get_rejection(number)
    if record is None:
        raise NotFound(f"no rejected request r{number}")
    details = {**record.__dict__, "id": f"r{record.id}", "received": utc_time(record.received_at)}
    if as_json:
        print(json.dumps(details))
        return 0
    for key in ("id", "received", "endpoint", "method", "path", "remote_addr", "reason", "hint",
                "body_size", "body_sha256"):
        print(f"{key:12} {printable(str(details[key]), newlines=False)}")
    return 0


class NotFound(Exception):
    """An id the store does not know: exit code 1."""


def _one_id(queue: Any, prefix: str) -> str:
    """The one delivery id ``prefix`` names; ``NotFound`` or (ambiguous) ``UsageError``."""
    matches = queue.match_ids(prefix, 2)
    if not matches:
        raise NotFound(f"no delivery {prefix!r}")
    if len(matches) > 1:
        raise UsageError(f"{prefix!r} is ambiguous: it matches several deliveries; give more of it")
    return str(matches[0])


def _run_replay(args: argparse.Namespace) -> int:
    statuses = tuple(args.status) + (
        ("dead",) if args.dead else ("retrying", "dead") if args.failed else ()
    )
    if args.ids and statuses:
        raise UsageError("give delivery ids or --failed/--dead/--status, not both")
    if not (args.ids or statuses):
        raise UsageError("give delivery ids, --failed, --dead or --status")
    if args.ids and (args.endpoint or args.since):
        raise UsageError("--endpoint and --since select by status; ids name their deliveries")
    if args.app:
        # A broker queue republishes through its engine; the SQLite queue re-queues in place.
        queue: Any = load_guard(args.app).queue
        if not callable(getattr(queue, "replay", None)):
            raise UsageError(f"{args.app} uses {queue!r}, which cannot replay")
    else:
        queue = _open_existing(args.db, args.store)
        if not callable(getattr(queue, "replay", None)):
            raise UsageError(
                "deliveries in a Redis store travel through a broker: pass --app module:guard "
                "so that replay can publish them again"
            )
    reader = queue.store if hasattr(queue, "store") else queue
    if args.ids:
        ids, missing = [], []
        for prefix in args.ids:
            try:
                ids.append(_one_id(reader, prefix))
            except NotFound:
                missing.append(prefix)
        for prefix in missing:
            print(f"not found: {prefix}", file=sys.stderr)
    else:
        if reader is not queue and "retrying" in statuses:
            # A broker already holds a message for each retrying delivery: replaying one would
            # run it twice. Dead ones (and ignored, processed) have none.
            statuses = tuple(s for s in statuses if s != "retrying")
            print("retrying deliveries are left to their broker message", file=sys.stderr)
            if not statuses:  # an empty filter would mean every status
                return 1
        since = time.time() - parse_duration(args.since) if args.since else None
        chosen = reader.deliveries(
            statuses=statuses, since=since, endpoint=args.endpoint, limit=10**9
        )
        ids, missing = [d.id for d in chosen], []
    if args.dry_run:
        for delivery_id in ids:
            print(delivery_id)
        print(f"would replay {len(ids)} delivery(ies); nothing changed", file=sys.stderr)
        return 0 if ids and not missing else 1
    count = _replay_with_progress(queue, ids)
    print(f"queued {count} delivery(ies) again", file=sys.stderr)
    if count:
        print(_pickup_note(queue), file=sys.stderr)
    return 0 if count and not missing else 1


REPLAY_CHUNK = 200


def _replay_with_progress(queue: Any, ids: list[str]) -> int:
    """Replay ``ids`` a chunk at a time, showing progress on stderr for long runs: a bar that
    redraws itself on a terminal, a plain line per chunk otherwise."""
    done = 0
    tty = sys.stderr.isatty()
    for start in range(0, len(ids), REPLAY_CHUNK):
        done += int(queue.replay(ids[start : start + REPLAY_CHUNK]))
        if len(ids) > REPLAY_CHUNK:
            finished = min(start + REPLAY_CHUNK, len(ids))
            if tty:
                filled = int(30 * finished / len(ids))
                bar = "#" * filled + "." * (30 - filled)
                print(f"\r[{bar}] {finished}/{len(ids)}", end="", file=sys.stderr, flush=True)
            else:
                print(f"replayed {finished}/{len(ids)}", file=sys.stderr, flush=True)
    if tty and len(ids) > REPLAY_CHUNK:
        print(file=sys.stderr)
    return done


def _pickup_note(queue: Any) -> str:
    """Whether a consumer will run replayed deliveries, as far as the store knows (consumers
    record that they are alive every few seconds)."""
    live = getattr(queue, "live_consumers", None)
    if not callable(live):
        return "the engine's workers run them (check that one is running)"
    within = 3 * PRESENCE_EVERY_SECONDS
    consumers = live(within)
    if not consumers:
        return (
            f"no worker has been seen on this store in the last {within:.0f} s: nothing will run "
            "them until one starts (webhook-guard worker module:guard, or any request to a web "
            "app whose Guard runs the embedded worker)"
        )
    served = "; ".join(f"{e}: {', '.join(who)}" for e, who in sorted(consumers.items()))
    return f"workers seen in the last {within:.0f} s will run them ({served})"


def _run_purge(args: argparse.Namespace) -> int:
    queue = _open_existing(args.db, args.store)
    gone = queue.purge(older_than=parse_duration(args.older_than))
    print(f"purged {gone} row(s)", file=sys.stderr)
    return 0


def _run_dashboard(args: argparse.Namespace) -> int:
    from webhook_guard.dashboard.app import is_loopback_host
    from webhook_guard.dashboard.server import NOT_LOOPBACK, serve

    if not args.public and not is_loopback_host(args.host):
        raise UsageError(NOT_LOOPBACK.format(host=args.host))
    source: Any = _open_existing(args.db, args.store)
    if not args.read_only and not callable(getattr(source, "replay", None)):
        raise UsageError(
            "deliveries in a Redis store travel through a broker: the dashboard cannot replay "
            "them; pass --read-only (or use webhook-guard replay --app module:guard)"
        )
    where = repr(source) if args.store else args.db  # a repr never shows a password
    serve(
        source,
        host=args.host,
        port=args.port,
        public=args.public,
        allow_replay=not args.read_only,
        ready=lambda url: print(
            f"webhook-guard dashboard: {where} at {url} (Ctrl-C to stop)", file=sys.stderr
        ),
    )
    return 0


# -- troubleshooting: send, check, verify (webhook_guard.diagnose) ---------------------------

_SECRET_HELP = "the shared secret (default: the first of $WEBHOOK_SECRET); never printed"
_SCHEME_HELP = "the receiver's scheme (default: cloudaipilot)"

_SEND_EPILOG = """\
examples:
  webhook-guard send https://example.com/webhook --secret "$WEBHOOK_SECRET"
  webhook-guard send https://example.com/webhook --secret S --event invoice.paid \\
      --data '{"event": "invoice.paid", "invoice": "in_1"}'
  webhook-guard send https://example.com/webhook --secret S --scheme stripe --file event.json
  webhook-guard send https://example.com/webhook --secret S --tamper     # must get 401
  webhook-guard send https://example.com/webhook --secret S --dry-run    # print, do not send

Without --data or --file, a small JSON test event is sent. The body is sent byte for byte as
given and signed over exactly those bytes. Prints the status and latency, then the response
body; on a non-2xx answer, what it means on stderr. Exit 0 on a 2xx answer, 1 on any other
answer or when the endpoint cannot be reached (the cause is printed), 2 on usage errors.
"""

_CHECK_EPILOG = """\
examples:
  webhook-guard check https://example.com/webhook --secret "$WEBHOOK_SECRET"
  webhook-guard check https://example.com/webhook --secret S --scheme github --json
  webhook-guard check http://127.0.0.1:8000/webhook --secret S --allow-http   # local test

The checks, in order: https (plain http fails unless --allow-http), resolves (DNS), address
(a private or loopback address is a warning: senders on the internet cannot reach it),
connects (TCP and a verified TLS handshake), signed (a signed test event must get a 2xx
within the senders' 10 s budget), tampered and unsigned (both must be rejected, or signature
verification is off). A failed line names the cause: an auth layer in front of the path
(401/403 without a webhook_guard error code), a secret that differs (signature_mismatch),
404 wrong path, 405 wrong method, 500 the handler raised inline, a timeout from processing
before answering.

This sends one real signed test event (event type webhook_guard.check) that your handlers
will see. Exit 0 if nothing failed (warnings allowed), 1 if a check failed, 2 on usage errors.
"""

_VERIFY_EPILOG = """\
examples:
  webhook-guard verify --secret "$WEBHOOK_SECRET" --body-file body.json \\
      --header 'X-CloudAIPilot-Signature: sha256=5d1c...'
  webhook-guard verify --scheme stripe --secret whsec_... --body-file body.json \\
      --header 'Stripe-Signature: t=1700000000,v1=...' --now 1700000100
  webhook-guard verify --scheme standard --secret whsec_... --body-file - --headers-file h.txt

Give the body exactly as it arrived (the raw bytes, not re-serialized JSON) and the headers as
the application saw them. If the signature does not match, the likely mistakes are tried:
re-serialized JSON, whitespace in the secret, whsec_ handling, hex vs base64, a missing or
wrong prefix, SHA-1, another preset's headers or format, timestamp skew, a header stripped by
a proxy. Each cause found is printed as one sentence with its fix; the secret and the expected
signature are never printed. Exit 0 if the signature matches as is, 1 if not, 2 on usage errors.

To capture a request: log the raw body (Flask request.get_data(), Django request.body,
Starlette await request.body()) and the headers in the receiver, or copy both from the
sender's delivery log.
"""


def _add_diagnose_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    from webhook_guard.core.schemes import PRESETS
    from webhook_guard.diagnose.check import SENDER_TIMEOUT_SECONDS

    raw = argparse.RawDescriptionHelpFormatter
    send = commands.add_parser(
        "send",
        help="send one correctly signed delivery to a URL (the guide's curl test, signed)",
        description="POST one delivery to URL, signed the way a correct sender of the scheme "
        "signs it.",
        epilog=_SEND_EPILOG,
        formatter_class=raw,
    )
    send.add_argument("url", help="the webhook URL, e.g. https://example.com/webhook")
    send.add_argument("--secret", help=_SECRET_HELP)
    send.add_argument("--scheme", default="cloudaipilot", choices=list(PRESETS), help=_SCHEME_HELP)
    send.add_argument("--event", help="event type (header or body field, as the scheme carries it)")
    body = send.add_mutually_exclusive_group()
    body.add_argument("--data", metavar="JSON", help="the body, sent exactly as given")
    body.add_argument("--file", metavar="F", help="read the body from this file ('-': stdin)")
    send.add_argument("--id", help="delivery id, for schemes that send one (default: random)")
    send.add_argument("--timestamp", type=int, help="Unix seconds to sign (default: now)")
    send.add_argument(
        "--tamper", action="store_true", help="change the body after signing: must get a 401"
    )
    send.add_argument(
        "--dry-run", action="store_true", help="print the request as JSON instead of sending it"
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=SENDER_TIMEOUT_SECONDS,
        help=f"seconds to wait for the answer (default {SENDER_TIMEOUT_SECONDS:g}, as senders)",
    )
    send.set_defaults(run=_run_send)

    check = commands.add_parser(
        "check",
        help="run the receiving checklist against a URL, each line pass/warn/fail with the cause",
        description="Run the receiving checklist for real against URL: https, DNS, address,\n"
        "connection, a signed test event answered 2xx within 10 s, and a tampered and an\n"
        "unsigned request rejected.",
        epilog=_CHECK_EPILOG,
        formatter_class=raw,
    )
    check.add_argument("url", help="the webhook URL, e.g. https://example.com/webhook")
    check.add_argument("--secret", help=_SECRET_HELP)
    check.add_argument("--scheme", default="cloudaipilot", choices=list(PRESETS), help=_SCHEME_HELP)
    check.add_argument(
        "--allow-http", action="store_true", help="plain http is a warning, not a failure"
    )
    check.add_argument("--json", action="store_true", help="one JSON object per check on stdout")
    # Test-only: the senders' budget is 10 s; tests shorten it rather than wait.
    check.add_argument(
        "--timeout", type=float, default=SENDER_TIMEOUT_SECONDS, help=argparse.SUPPRESS
    )
    check.set_defaults(run=_run_check)

    verify = commands.add_parser(
        "verify",
        help="say whether a captured request's signature matches, and if not, why",
        description="Check a captured request's signature against a secret; if it does not\n"
        "match, find the likely mistake and say how to fix it.",
        epilog=_VERIFY_EPILOG,
        formatter_class=raw,
    )
    verify.add_argument("--secret", help=_SECRET_HELP)
    verify.add_argument(
        "--body-file", required=True, metavar="F", help="the raw body as received ('-': stdin)"
    )
    verify.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header; repeat for each",
    )
    verify.add_argument(
        "--headers-file", metavar="F", help="headers, one 'Name: value' per line (as captured)"
    )
    verify.add_argument(
        "--scheme", default="cloudaipilot", choices=list(PRESETS), help=_SCHEME_HELP
    )
    verify.add_argument(
        "--now", type=float, help="Unix seconds to check a timestamp against (default: now)"
    )
    verify.add_argument("--json", action="store_true", help="the verdict as one JSON object")
    verify.set_defaults(run=_run_verify)


def _diagnose_secret(args: argparse.Namespace) -> str:
    """The secret to sign with: the first that --secret or WEBHOOK_SECRET holds, split by the
    rule a Guard applies to the same string (``split_secrets``: comma-separated, spaces around
    each stripped), so the CLI and the receiver never disagree on what the secret is."""
    from webhook_guard.core.secrets import split_secrets

    value: str | None = args.secret
    if value is None:
        value = os.environ.get("WEBHOOK_SECRET") or ""
    secrets = split_secrets(value)
    if not secrets:
        raise UsageError("give the secret with --secret or set WEBHOOK_SECRET")
    return secrets[0]


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None


def _run_send(args: argparse.Namespace) -> int:
    from webhook_guard.diagnose import client
    from webhook_guard.diagnose.check import SENDER_TIMEOUT_SECONDS, explain, explain_failure
    from webhook_guard.exceptions import ConfigurationError

    secret = _diagnose_secret(args)
    try:
        target = client.parse_url(args.url)
    except client.InvalidURL as error:
        raise UsageError(str(error)) from None
    if args.data is not None:
        body = args.data.encode("utf-8")
    elif args.file is not None:
        body = _read_input(args.file)
    else:
        body = client.basic_payload(args.scheme, args.event or client.DEFAULT_EVENT, args.id)
    try:
        request = client.signed_request(
            args.scheme,
            secret,
            body,
            event=args.event,
            msg_id=args.id,
            timestamp=args.timestamp,
            tampered=args.tamper,
        )
    except ConfigurationError as error:
        raise UsageError(str(error)) from None
    if args.dry_run:
        shown = {
            "method": "POST",
            "url": target.url,
            "headers": request.headers,
            "body": request.body.decode("utf-8", "replace"),
        }
        print(json.dumps(shown, indent=2))
        return 0
    note = ", body changed after signing" if args.tamper else ""
    print(f"POST {target.url} ({args.scheme}, {len(request.body)} bytes{note})", file=sys.stderr)
    try:
        reply = client.post(target, request, timeout=args.timeout)
    except client.RequestFailed as error:
        meaning = explain_failure(error, args.timeout)
        fix = f"; {meaning.fix}" if meaning.fix else ""
        print(f"webhook-guard send: {meaning.cause}{fix}", file=sys.stderr)
        return 1
    print(f"{reply.status} {reply.reason} in {reply.latency * 1000:.0f} ms".replace("  ", " "))
    print(printable(reply.text()))  # the receiver's bytes: never let them drive the terminal
    if args.tamper:
        verdict = (
            "the tampered delivery was accepted: signature verification is off"
            if reply.ok
            else "the tampered delivery was rejected, as it must be"
        )
        print(verdict, file=sys.stderr)
    elif not reply.ok:
        meaning = explain(reply, path=target.path)
        print(f"{meaning.cause}; {meaning.fix}" if meaning.fix else meaning.cause, file=sys.stderr)
    elif reply.latency > SENDER_TIMEOUT_SECONDS / 2:
        print(
            "slow: senders give up after 10 s; answer 200 first and process in a worker",
            file=sys.stderr,
        )
    return 0 if reply.ok else 1


def _run_check(args: argparse.Namespace) -> int:
    from webhook_guard.diagnose.check import format_row, iter_checks, summary
    from webhook_guard.diagnose.client import InvalidURL
    from webhook_guard.exceptions import ConfigurationError

    if args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    secret = _diagnose_secret(args)
    try:
        checks = iter_checks(
            args.url, secret, args.scheme, budget=args.timeout, allow_http=args.allow_http
        )
    except (InvalidURL, ConfigurationError) as error:
        raise UsageError(str(error)) from None
    rows = []
    for row in checks:  # each result as soon as its check finishes: no silent wait
        rows.append(row)
        line = json.dumps(row.as_dict()) if args.json else printable(format_row(row))
        print(line, flush=True)
    print(summary(rows), file=sys.stderr)
    return 1 if any(row.failed for row in rows) else 0


def _parse_header(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep or not name.strip() or " " in name.strip():
        raise UsageError(f"{line[:60]!r} is not a header; write it as 'Name: value'")
    return name.strip(), value.strip()


def _run_verify(args: argparse.Namespace) -> int:
    from webhook_guard.diagnose.verify import diagnose

    secret = _diagnose_secret(args)
    lines = list(args.header)
    if args.headers_file:
        captured = _read_input(args.headers_file).decode("utf-8", "replace").splitlines()
        # A pasted capture may start with the request line; comments and blanks are skipped.
        lines += [
            line
            for line in captured
            if line.strip()
            and not line.startswith("#")
            and not re.match(r"^[A-Z]+ \S+ HTTP/", line)
        ]
    if not lines:
        raise UsageError("give the request's headers with --header 'Name: value' or --headers-file")
    headers = [_parse_header(line) for line in lines]
    body = _read_input(args.body_file)
    findings = diagnose(secret, body, headers, args.scheme, args.now)
    if args.json:
        verdict = {
            "matches": not findings,
            "scheme": args.scheme,
            "findings": [
                {"code": f.code, "cause": f.cause, "fix": f.fix, "sentence": f.sentence()}
                for f in findings
            ],
        }
        print(json.dumps(verdict))
    elif not findings:
        print(f"the signature matches: the request verifies as {args.scheme} with this secret")
    else:
        for finding in findings:
            print(printable(finding.sentence()))
    if findings:
        print(f"the signature does not verify as {args.scheme}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
