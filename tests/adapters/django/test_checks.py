"""System checks: each id fires on the settings it is about, and a good configuration is clean."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from tests.adapters.transports_django import MIDDLEWARE, OUR_MIDDLEWARE
from tests.contract import contract_guard
from webhook_guard.adapters.django import checks
from webhook_guard.queues.sqlite import SQLiteQueue

GUARD_PATH = f"{__name__}:GUARD"
NOT_A_GUARD_PATH = f"{__name__}:NOT_A_GUARD"
GUARD = contract_guard(
    "cloudaipilot", SQLiteQueue("/nonexistent-dir/q.db"), endpoint="checks-module-guard"
)
NOT_A_GUARD = object()


def ids(**overrides: Any) -> list[str]:
    """The ids our checks report under ``overrides``."""
    with override_settings(**overrides):
        return [m.id or "" for m in run_checks(tags=[checks.TAG])]


def endpoint(tmp_path: Path, **keys: Any) -> dict[str, Any]:
    return {"ENDPOINTS": {"/webhook": {"SECRET": "s", "DB": str(tmp_path / "q.db"), **keys}}}


def test_a_good_configuration_is_clean_and_opens_nothing(tmp_path: Path) -> None:
    """A correct setting gives no message, creates no database file and starts no thread."""
    threads = threading.active_count()
    assert ids(WEBHOOK_GUARD=endpoint(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == threads


def test_e001_missing_secret(tmp_path: Path) -> None:
    """An endpoint dict without SECRET (and not in insecure dev mode) is E001."""
    setting = endpoint(tmp_path)
    del setting["ENDPOINTS"]["/webhook"]["SECRET"]
    assert ids(WEBHOOK_GUARD=setting) == ["webhook_guard.E001"]
    setting["ENDPOINTS"]["/webhook"]["INSECURE_DEV_MODE"] = "true"
    assert ids(WEBHOOK_GUARD=setting) == []


def test_e001_missing_secret_behind_a_dotted_path() -> None:
    """A dotted path whose Guard refuses to start for want of a secret is E001, not E005."""
    setting = {"ENDPOINTS": {"/webhook": "tests.adapters.django.guard_without_secret:guard"}}
    assert ids(WEBHOOK_GUARD=setting) == ["webhook_guard.E001"]


def test_e002_unknown_scheme(tmp_path: Path) -> None:
    """An endpoint naming a scheme that is not a preset is E002."""
    assert ids(WEBHOOK_GUARD=endpoint(tmp_path, SCHEME="paypal")) == ["webhook_guard.E002"]


@pytest.mark.parametrize(
    "blocker",
    [
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ],
)
def test_e003_middleware_after_csrf_or_auth(tmp_path: Path, blocker: str) -> None:
    """Our middleware placed after CSRF, authentication or login-required is E003."""
    order = [blocker, OUR_MIDDLEWARE]
    assert ids(WEBHOOK_GUARD=endpoint(tmp_path), MIDDLEWARE=order) == ["webhook_guard.E003"]


def test_e003_middleware_missing(tmp_path: Path) -> None:
    """WEBHOOK_GUARD set while the middleware is not in MIDDLEWARE is E003."""
    assert ids(WEBHOOK_GUARD=endpoint(tmp_path), MIDDLEWARE=MIDDLEWARE[1:]) == [
        "webhook_guard.E003"
    ]


@pytest.mark.parametrize("queue", ["missing-dir/q.db", "redis://localhost/0"])
def test_e004_queue_unusable(tmp_path: Path, queue: str) -> None:
    """A SQLite file in a missing directory, or an unsupported queue URL, is E004."""
    where = queue if "://" in queue else str(tmp_path / queue)
    assert ids(WEBHOOK_GUARD=endpoint(tmp_path, QUEUE=where)) == ["webhook_guard.E004"]


def test_e004_for_a_guard_named_by_dotted_path() -> None:
    """A Guard (by dotted path) whose SQLite directory is missing is E004."""
    assert ids(WEBHOOK_GUARD={"ENDPOINTS": {"/webhook": GUARD_PATH}}) == ["webhook_guard.E004"]


@pytest.mark.parametrize(
    "setting",
    [
        ["/webhook"],
        {"endpoints": {}},
        {"ENDPOINTS": {}},
        {"ENDPOINTS": {"webhook": "x:y"}},
        {"ENDPOINTS": {"/webhook": "no_such_module_anywhere:guard"}},
        {"ENDPOINTS": {"/webhook": NOT_A_GUARD_PATH}},
        {"ENDPOINTS": {"/webhook": 42}},
        {"ENDPOINTS": {"/webhook": {"SECRET": "s", "MAX_BODY_BYTES": "lots"}}},
        {"ENDPOINTS": {"/webhook": {"SECRET": "s", "HANDLERS": ["no_such_module_anywhere.f"]}}},
    ],
    ids=[
        "not a dict",
        "no ENDPOINTS",
        "empty ENDPOINTS",
        "path without slash",
        "not importable",
        "not a Guard",
        "wrong type",
        "bad number",
        "bad handler",
    ],
)
def test_e005_malformed_setting(setting: Any) -> None:
    """Anything malformed in WEBHOOK_GUARD is E005 (one message)."""
    assert ids(WEBHOOK_GUARD=setting) == ["webhook_guard.E005"]


def test_e005_middleware_without_the_setting() -> None:
    """The middleware installed with no WEBHOOK_GUARD setting is E005."""
    with override_settings():
        from django.conf import settings

        del settings.WEBHOOK_GUARD
        assert [m.id for m in run_checks(tags=[checks.TAG])] == ["webhook_guard.E005"]


def test_w001_cap_above_data_upload_max_memory_size(tmp_path: Path) -> None:
    """An endpoint cap above DATA_UPLOAD_MAX_MEMORY_SIZE is warned about (W001)."""
    setting = endpoint(tmp_path, MAX_BODY_BYTES=10_000_000)
    assert ids(WEBHOOK_GUARD=setting) == ["webhook_guard.W001"]
    assert ids(WEBHOOK_GUARD=setting, DATA_UPLOAD_MAX_MEMORY_SIZE=None) == []


def test_ids_are_unique_and_all_listed_in_the_module_docstring() -> None:
    """Every id in CHECK_IDS appears once in the checks module's docstring table, and no other."""
    listed = re.findall(r"webhook_guard\.([EW]\d{3})", checks.__doc__ or "")
    assert sorted(listed) == sorted(checks.CHECK_IDS)
    assert len(listed) == len(set(listed))


def test_messages_never_contain_the_secret(tmp_path: Path) -> None:
    """Check messages name settings, never the secret's value."""
    setting = endpoint(tmp_path, SECRET="hunter2-very-secret", SCHEME="nope", QUEUE="redis://x")
    with override_settings(WEBHOOK_GUARD=setting):
        messages = run_checks(tags=[checks.TAG])
    assert messages and all("hunter2" not in str(m) for m in messages)


def test_e006_two_endpoints_with_one_name_on_one_store(tmp_path: Path) -> None:
    """Two ENDPOINTS that would share an endpoint name on one database are E006; the default
    name (the path) keeps them apart, and another database is another store."""
    db = str(tmp_path / "q.db")
    both = {
        "/orders": {"SECRET": "s", "DB": db, "ENDPOINT": "shop"},
        "/github": {"SECRET": "s", "DB": db, "ENDPOINT": "shop"},
    }
    assert ids(WEBHOOK_GUARD={"ENDPOINTS": both}) == ["webhook_guard.E006"]
    apart = {path: {"SECRET": "s", "DB": db} for path in ("/orders", "/github")}
    assert ids(WEBHOOK_GUARD={"ENDPOINTS": apart}) == []
    elsewhere = dict(both, **{"/github": {"SECRET": "s", "DB": db + "2", "ENDPOINT": "shop"}})
    assert ids(WEBHOOK_GUARD={"ENDPOINTS": elsewhere}) == []
