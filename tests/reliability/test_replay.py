"""Replayed requests: inside the tolerance a replay is deduped; outside it is rejected as stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contract import SECRET, contract_guard, scheme_secret
from webhook_guard.queues.sqlite import SQLiteQueue
from webhook_guard.testing import FrozenClock, sign_request

BODY = b'{"type": "invoice.paid", "id": "evt_1", "event_id": "Ev1"}'


@pytest.mark.parametrize("scheme", ["standard", "stripe", "slack"])
def test_replay_inside_tolerance_is_deduped_and_outside_is_stale(
    tmp_path: Path, scheme: str
) -> None:
    """The same signed request again: duplicate within 300 s, timestamp_out_of_tolerance after."""
    clock = FrozenClock(1_800_000_000)
    guard = contract_guard(scheme, SQLiteQueue(tmp_path / "q.db"), clock=clock)
    headers = sign_request(scheme, scheme_secret(scheme, SECRET), BODY, timestamp=int(clock()))
    first = guard.receive("POST", "/webhook", headers, BODY)
    assert first.status == 200
    clock.advance(299)
    replay = guard.receive("POST", "/webhook", headers, BODY)
    assert json.loads(replay.body) == {"status": "duplicate", "id": json.loads(first.body)["id"]}
    clock.advance(2)
    stale = guard.receive("POST", "/webhook", headers, BODY)
    assert (stale.status, json.loads(stale.body)) == (401, {"error": "timestamp_out_of_tolerance"})
    assert len(guard.queue.deliveries()) == 1  # type: ignore[attr-defined]


def test_unsigned_timestamp_schemes_dedupe_replays_for_the_whole_window(tmp_path: Path) -> None:
    """cloudaipilot signs no timestamp: a replayed body is deduped by its sha256 for 7 days."""
    clock = FrozenClock(1_800_000_000)
    guard = contract_guard("cloudaipilot", SQLiteQueue(tmp_path / "q.db"), clock=clock)
    headers = {
        "X-CloudAIPilot-Signature": sign_request("cloudaipilot", SECRET, BODY)[
            "X-CloudAIPilot-Signature"
        ]
    }
    first = json.loads(guard.receive("POST", "/webhook", headers, BODY).body)
    again = json.loads(guard.receive("POST", "/webhook", headers, BODY).body)
    assert again == {"status": "duplicate", "id": first["id"]}
