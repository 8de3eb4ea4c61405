"""`manage.py webhook_guard_worker` in-process: argument errors, and a burst run that serves
every endpoint in settings with Django's connection handling around each handler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.adapters.transports_django import configure
from tests.contract import SECRET
from webhook_guard.adapters.django.conf import conf, django_connections
from webhook_guard.core.delivery import Delivery
from webhook_guard.testing import sign_request

HANDLED: list[tuple[str, str]] = []


def on_any(delivery: Delivery) -> None:
    """A handler named by dotted path in the settings below."""
    HANDLED.append((delivery.endpoint, delivery.id))


def endpoints(tmp_path: Path) -> dict[str, Any]:
    """Two endpoints on one store, each with this module's handler."""
    entry = {"SECRET": SECRET, "DB": str(tmp_path / "q.db"), "WORKER": "external"}
    handler = {"HANDLERS": [f"{__name__}.on_any"]}
    return {"ENDPOINTS": {"/orders": {**entry, **handler}, "/github": {**entry, **handler}}}


def test_a_burst_serves_every_endpoint_with_its_own_guard(tmp_path: Path) -> None:
    """--burst runs each endpoint's deliveries once, with Django's connection handling."""
    configure()
    HANDLED.clear()
    with override_settings(WEBHOOK_GUARD=endpoints(tmp_path)):
        ids = {}
        for path in ("/orders", "/github"):
            guard = conf.guard_for(path)
            assert guard is not None and django_connections in guard._handler_contexts
            body = f'{{"path": "{path}"}}'.encode()
            outcome = guard.receive("POST", path, sign_request("cloudaipilot", SECRET, body), body)
            ids[path] = outcome.body.split(b'"id": "')[1].split(b'"')[0].decode()
        call_command("webhook_guard_worker", "--burst")
    assert sorted(HANDLED) == sorted([("/orders", ids["/orders"]), ("/github", ids["/github"])])


def test_argument_and_setting_errors_are_command_errors(tmp_path: Path) -> None:
    """--threads 0 and settings with no endpoint are clear errors, not tracebacks."""
    configure()
    with override_settings(WEBHOOK_GUARD=endpoints(tmp_path)):
        with pytest.raises(CommandError, match="--threads"):
            call_command("webhook_guard_worker", "--threads", "0")
    with override_settings(WEBHOOK_GUARD={"ENDPOINTS": {}}):
        with pytest.raises(CommandError, match="names no endpoint"):
            call_command("webhook_guard_worker", "--burst")
