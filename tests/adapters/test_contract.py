"""The response contract, run unchanged against every adapter in-process.

Each ``transports_<adapter>.py`` beside this file maps adapter names to a function that wraps a
Guard in that framework's app and returns a Transport. Frameworks that are not installed skip.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.contract import Case, Transport, cases_for, contract_guard, run_case
from webhook_guard.core.guard import Guard
from webhook_guard.queues.sqlite import SQLiteQueue

TransportFactory = Callable[[Guard], Transport]
SCHEMES = ("cloudaipilot", "standard", "github", "stripe", "slack", "shopify")


def _factories() -> dict[str, str]:
    """adapter name -> module that provides it, without importing any framework yet."""
    found: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("transports_*.py")):
        module = importlib.import_module(f"tests.adapters.{path.stem}")
        for name in module.TRANSPORTS:
            found[name] = path.stem
    return found


FACTORIES = _factories()


def _transport_factory(adapter: str) -> TransportFactory:
    module = importlib.import_module(f"tests.adapters.{FACTORIES[adapter]}")
    factory: TransportFactory = module.TRANSPORTS[adapter]
    return factory


PARAMS = [
    pytest.param(adapter, scheme, case, id=f"{adapter}-{scheme}-{case.name}")
    for adapter in FACTORIES
    for scheme in SCHEMES
    for case in cases_for(scheme)
]


@pytest.mark.parametrize(("adapter", "scheme", "case"), PARAMS)
def test_contract(adapter: str, scheme: str, case: Case, tmp_path: Path) -> None:
    """Every adapter answers every contract case with the same status and body."""
    db = tmp_path / ("missing-dir/q.db" if case.queue_down else "q.db")
    guard = contract_guard(scheme, SQLiteQueue(db))
    transport = _transport_factory(adapter)(guard)
    run_case(case, guard, transport)
    if case.status == 200 and not case.queue_down:
        stored = guard.queue.deliveries()  # type: ignore[attr-defined]
        assert len(stored) == 1, "exactly one delivery stored, duplicates included"
        assert guard.queue.get(stored[0].id).body == case.body  # type: ignore[attr-defined]
    elif case.status != 200 and not case.queue_down:
        rejected = guard.queue.rejections()  # type: ignore[attr-defined]
        assert [r.reason for r in rejected] == [case.error], "each rejection is in the history"
