"""Human-readable output never carries a sender's control characters to the terminal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.contract import SECRET, contract_guard
from tests.servers import BIN
from webhook_guard.testing import sign_request
from webhook_guard.textsafe import printable
from webhook_guard.worker import Worker

NASTY = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\x00"


def test_printable_escapes_every_control_and_bidi_character() -> None:
    """ESC, BEL, NUL, a C1 CSI and a right-to-left override come out as visible escapes."""
    shown = printable(NASTY)
    assert shown == "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil\\x00"
    assert printable("a\tb\nc") == "a b\nc" and printable("a\nb", newlines=False) == "a\\nb"


def test_history_and_show_print_no_raw_control_characters(tmp_path: Path) -> None:
    """A signed delivery whose event, body and headers carry terminal escapes: `history` and
    `show` print them escaped; --json stays valid JSON."""
    guard = contract_guard("cloudaipilot", str(tmp_path / "q.db"))
    guard.add_handler(lambda delivery: (_ for _ in ()).throw(RuntimeError(NASTY)))
    body = json.dumps({"event": NASTY, "text": NASTY}, ensure_ascii=False).encode()
    headers = {**sign_request("cloudaipilot", SECRET, body), "X-Note": NASTY.replace("\x00", "")}
    outcome = guard.receive("POST", "/", headers, body)
    delivery_id = json.loads(outcome.body)["id"]
    Worker(guard).drain(timeout=10)
    cli = str(BIN / "webhook-guard")
    db = ["--db", str(tmp_path / "q.db")]
    for args in (["history", *db], ["show", *db, delivery_id]):
        out = subprocess.run([cli, *args], capture_output=True, timeout=60).stdout
        assert out, args
        assert not any(byte in out for byte in b"\x1b\x07\x00"), (args, out[:300])
        assert b"\xc2\x9b" not in out and "\u202e".encode() not in out
    raw = subprocess.run([cli, "history", *db, "--json"], capture_output=True, timeout=60).stdout
    assert all(json.loads(line) for line in raw.splitlines())
