"""``manage.py webhook_guard_worker``: run the handlers of every endpoint in settings.

Builds every Guard named in ``settings.WEBHOOK_GUARD["ENDPOINTS"]`` (Django is set up, so
handlers may use the ORM; connections are closed around each handler as Django's request cycle
does) and consumes their stores: one worker per store. SIGTERM or Ctrl-C finishes the delivery
in hand; a second one stops at once. Exits non-zero when it stops for any other reason.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webhook_guard.adapters.django.conf import conf
from webhook_guard.cli import run_workers
from webhook_guard.core.guard import Guard
from webhook_guard.exceptions import WebhookGuardError


class Command(BaseCommand):
    """Consume the webhook deliveries of every endpoint in ``settings.WEBHOOK_GUARD``."""

    help = (
        "Run the handlers of every endpoint in settings.WEBHOOK_GUARD (one worker per store); "
        "SIGTERM finishes the delivery in hand."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """``--threads``, ``--burst``, ``--lease``, as ``webhook-guard worker`` takes them."""
        parser.add_argument("--threads", type=int, default=1, help="deliveries run at once")
        parser.add_argument("--burst", action="store_true", help="exit once nothing is due")
        parser.add_argument("--lease", type=float, help="seconds a claim lasts without a beat")

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the Guards and run their workers until stopped."""
        if options["threads"] < 1:
            raise CommandError("--threads must be at least 1")
        paths = list(conf.endpoints)
        if not paths:
            raise CommandError('settings.WEBHOOK_GUARD["ENDPOINTS"] names no endpoint')
        guards: list[Guard] = []
        for path in paths:
            guard = conf.guard_for(path)
            if guard is not None and all(guard is not g for g in guards):
                guards.append(guard)
        try:
            status = run_workers(
                guards, threads=options["threads"], burst=options["burst"], lease=options["lease"]
            )
        except WebhookGuardError as error:
            raise CommandError(str(error)) from error
        if status:
            sys.exit(status)
