"""The settings shadow: endpoints as Guards, dotted paths or dicts, built lazily and cached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from tests.contract import PATH, contract_guard
from webhook_guard.adapters.django.conf import WebhookGuardSettings, conf
from webhook_guard.core.delivery import Delivery
from webhook_guard.core.guard import Guard
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import sign_request

ROOT = Path(__file__).resolve().parents[3]
GUARD = contract_guard("github", SQLiteQueue("/nonexistent-dir/q.db"), endpoint="conf-module-guard")
SEEN: list[Delivery] = []


def on_any(delivery: Delivery) -> None:
    SEEN.append(delivery)


def on_invoice(delivery: Delivery) -> None:
    SEEN.append(delivery)


def test_nothing_is_built_before_the_first_request(tmp_path: Path) -> None:
    """Reading the setting builds no Guard; the first lookup of the path does."""
    fresh = WebhookGuardSettings()
    setting = {"ENDPOINTS": {"/hook": {"SECRET": "s", "DB": str(tmp_path / "q.db")}}}
    with override_settings(WEBHOOK_GUARD=setting):
        assert list(fresh.endpoints) == ["/hook"]
        assert fresh._guards == {}
        assert fresh.guard_for("/elsewhere") is None and fresh._guards == {}
        guard = fresh.guard_for("/hook")
    assert isinstance(guard, Guard)
    assert not (tmp_path / "q.db").exists(), "building a Guard opens no database"


def test_a_dict_endpoint_is_named_after_its_path_and_gets_its_handlers(tmp_path: Path) -> None:
    """ENDPOINT defaults to the path; HANDLERS (list or pattern dict) are registered."""
    setting = {
        "ENDPOINTS": {
            "/hooks/a": {
                "SECRET": "s",
                "DB": str(tmp_path / "q.db"),
                "HANDLERS": [f"{__name__}.on_any"],
            },
            "/hooks/b": {
                "SECRET": "s",
                "SCHEME": "github",
                "ENDPOINT": "billing",
                "HANDLERS": {"invoice.*": f"{__name__}:on_invoice"},
            },
        }
    }
    with override_settings(WEBHOOK_GUARD=setting):
        a, b = conf.guard_for("/hooks/a"), conf.guard_for("/hooks/b")
    assert a is not None and b is not None
    assert (a.endpoint, b.endpoint, b.scheme.name) == ("/hooks/a", "billing", "github")
    assert a.handlers_for("anything") == [on_any]
    assert b.handlers_for("invoice.paid") == [on_invoice] and b.handlers_for("charge") == []


def test_guard_instances_and_dotted_paths_are_used_as_they_are() -> None:
    """A Guard instance or a dotted path to one is the very Guard that answers."""
    with override_settings(WEBHOOK_GUARD={"ENDPOINTS": {"/a": GUARD, "/b": f"{__name__}:GUARD"}}):
        assert conf.guard_for("/a") is GUARD
        assert conf.guard_for("/b") is GUARD


def test_the_cache_follows_the_object_under_the_path(tmp_path: Path) -> None:
    """Same endpoint object: same Guard; another object under the path: a new Guard."""
    first: dict[str, Any] = {"SECRET": "s", "DB": str(tmp_path / "q.db")}
    with override_settings(WEBHOOK_GUARD={"ENDPOINTS": {"/hook": first}}):
        built = conf.guard_for("/hook")
        assert conf.guard_for("/hook") is built
    with override_settings(WEBHOOK_GUARD={"ENDPOINTS": {"/hook": dict(first, SCHEME="slack")}}):
        rebuilt = conf.guard_for("/hook")
    assert rebuilt is not built and rebuilt is not None and rebuilt.scheme.name == "slack"


@pytest.mark.parametrize(
    "setting",
    [["/webhook"], {"ENDPOINTS": {PATH: "no_such_module_anywhere:guard"}}],
    ids=["not a dict", "not importable"],
)
def test_a_broken_setting_names_itself_at_request_time(setting: Any) -> None:
    """A request to a broken configuration raises ImproperlyConfigured naming WEBHOOK_GUARD."""
    with override_settings(WEBHOOK_GUARD=setting):
        with pytest.raises(ImproperlyConfigured, match="WEBHOOK_GUARD"):
            Client(raise_request_exception=True).post(PATH, b"{}", content_type="application/json")


def test_a_dict_endpoint_answers_through_the_middleware(tmp_path: Path) -> None:
    """End to end in-process: a dict endpoint verifies and stores the delivery under its path."""
    setting = {
        "ENDPOINTS": {
            "/hooks/gh": {
                "SECRET": "s",
                "SCHEME": "github",
                "WORKER": "external",
                "DB": str(tmp_path / "q.db"),
            }
        }
    }
    body = b'{"action": "opened"}'
    headers = sign_request("github", "s", body, event="issues")
    with override_settings(WEBHOOK_GUARD=setting):
        reply = Client().post("/hooks/gh", body, content_type="application/json", headers=headers)
        guard = conf.guard_for("/hooks/gh")
    assert reply.status_code == 200, reply.content
    assert guard is not None
    (stored,) = guard.queue.deliveries()  # type: ignore[attr-defined]
    assert (stored.endpoint, stored.event_type) == ("/hooks/gh", "issues")
    guard.queue.close()


def test_setup_and_app_loading_build_no_guard_and_start_no_thread(tmp_path: Path) -> None:
    """django.setup() and loading the sample's WSGI app import no Guard and start no thread."""
    code = """
import sys, threading
from sample_apps.django_app.wsgi import application
assert "sample_apps.django_app.webhooks" not in sys.modules, "Guard imported at start-up"
assert threading.active_count() == 1, threading.enumerate()
print("ok")
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sample_apps.django_app.settings",
        "WEBHOOK_SECRET": "s",
        "WEBHOOK_GUARD_DB": str(tmp_path / "q.db"),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr
    assert not (tmp_path / "q.db").exists()
