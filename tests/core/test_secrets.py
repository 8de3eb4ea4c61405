"""webhook_guard.core.secrets: a secret never shows in a repr, a log or an error, and one rule
splits several secrets in one string, the same in the Guard, the config and the CLI."""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from webhook_guard.core.config import GuardConfig
from webhook_guard.core.guard import Guard
from webhook_guard.core.secrets import Secret, split_secrets
from webhook_guard.exceptions import WebhookGuardError
from webhook_guard.testing import sign_request

CANARY = "CANARY-s3cr3t-8d1f"
ROOT = Path(__file__).resolve().parents[2]

# (the string as a user writes it, the secrets it holds): the one rule, for every reader.
SPLITS = [
    ("plain", ("plain",)),
    ("old,new", ("old", "new")),
    (" old , new ", ("old", "new")),
    ("a,,b,", ("a", "b")),
    ("with space inside,x", ("with space inside", "x")),
]


def revealed(config: GuardConfig) -> tuple[str, ...]:
    return tuple(secret.reveal() for secret in config.secrets)


# -- Secret ------------------------------------------------------------------------------------


def test_a_secret_is_masked_in_repr_str_and_formatting() -> None:
    """repr, str, f-strings and logging's %-formatting show Secret('****'); reveal() does not."""
    secret = Secret(CANARY)
    logged = logging.makeLogRecord({"msg": "%s %r", "args": (secret, secret)}).getMessage()
    shown = [repr(secret), str(secret), f"{secret}", logged, repr([secret])]
    assert all(CANARY not in text for text in shown)
    assert repr(secret) == "Secret('****')"
    assert secret.reveal() == CANARY


def test_a_secret_is_immutable_comparable_and_survives_pickling() -> None:
    """Equal by value to another Secret only, immutable, and pickled/copied with its value."""
    secret = Secret(CANARY)
    assert secret == Secret(CANARY) and secret != Secret("other") and secret != CANARY
    assert hash(secret) == hash(Secret(CANARY))
    with pytest.raises(AttributeError):
        secret._value = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(secret)).reveal() == CANARY
    assert copy.deepcopy(secret).reveal() == CANARY
    assert Secret(secret).reveal() == CANARY


def test_a_secret_of_another_type_is_refused_without_echoing_it() -> None:
    """A non-string secret is refused, naming its type, not its value."""
    with pytest.raises(TypeError) as caught:
        Secret(12345678)  # type: ignore[arg-type]
    assert "12345678" not in str(caught.value)


# -- one rule for several secrets ------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), SPLITS)
def test_split_secrets_rule(value: str, expected: tuple[str, ...]) -> None:
    """Comma-separated, spaces around items stripped, blank items dropped."""
    assert split_secrets(value) == expected


@pytest.mark.parametrize(("value", "expected"), SPLITS)
def test_guard_config_and_environment_split_alike(
    value: str, expected: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guard(str), Guard() with WEBHOOK_SECRET, GuardConfig(secrets=str), from_mapping and
    from_env hold the same secrets for the same string."""
    monkeypatch.setenv("WEBHOOK_SECRET", value)
    configs = [
        Guard(value, queue=str(tmp_path / "a.db"), worker="external").config,
        Guard(queue=str(tmp_path / "b.db"), worker="external").config,
        GuardConfig(secrets=value),  # type: ignore[arg-type]
        GuardConfig.from_mapping({"SECRET": value}),
        GuardConfig.from_env({"WEBHOOK_SECRET": value}),
    ]
    assert [revealed(c) for c in configs] == [expected] * len(configs)


def test_a_list_is_never_split(tmp_path: Path) -> None:
    """A secret with a comma goes in a list, to the Guard or the SECRETS setting, unchanged."""
    guard = Guard(["has,comma", "plain"], queue=str(tmp_path / "q.db"), worker="external")
    assert revealed(guard.config) == ("has,comma", "plain")
    assert revealed(GuardConfig(secrets=("has,comma",))) == ("has,comma",)
    assert revealed(GuardConfig.from_mapping({"SECRETS": ["has,comma"]})) == ("has,comma",)
    body = b'{"event": "comma"}'
    headers = sign_request("cloudaipilot", "has,comma", body)
    assert guard.receive("POST", "/webhook", headers, body).status == 200


@pytest.mark.parametrize(("value", "expected"), SPLITS)
def test_the_cli_signs_with_a_secret_the_guard_accepts(
    value: str, expected: tuple[str, ...], tmp_path: Path
) -> None:
    """`webhook-guard send --dry-run` with WEBHOOK_SECRET=<value> signs a request that
    Guard(<value>) accepts: the CLI and the Guard read the variable by the same rule."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env["WEBHOOK_SECRET"] = value
    done = subprocess.run(
        [sys.executable, "-m", "webhook_guard", "send", "http://127.0.0.1:9/webhook", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    guard = Guard(value, queue=str(tmp_path / "q.db"), worker="external")
    outcome = guard.receive("POST", "/webhook", request["headers"], request["body"].encode())
    assert outcome.status == 200, outcome
    # Signed with the first secret the rule finds, which only that secret verifies.
    alone = Guard(expected[0], queue=str(tmp_path / "first.db"), worker="external")
    answer = alone.receive("POST", "/webhook", request["headers"], request["body"].encode())
    assert answer.status == 200
    assert all(CANARY not in text for text in (done.stdout, done.stderr))


# -- no secret in any repr, log or error -------------------------------------------------------


def test_no_secret_in_config_or_guard_reprs(tmp_path: Path) -> None:
    """repr and str of the config and the Guard, and a copy of the config, never show it."""
    guard = Guard([CANARY, CANARY + "-next"], queue=str(tmp_path / "q.db"), worker="external")
    texts = [repr(guard.config), str(guard.config), repr(guard), str(guard)]
    texts.append(repr(GuardConfig(secrets=(CANARY,))))
    assert all(CANARY not in text for text in texts)
    assert "Secret('****')" in repr(guard.config)


def test_no_secret_in_any_log_record_during_receive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Accepted, tampered, unsigned and duplicate requests log nothing that holds the secret."""
    guard = Guard(CANARY, queue=str(tmp_path / "q.db"), worker="external")
    body = b'{"event": "logged"}'
    headers = sign_request("cloudaipilot", CANARY, body)
    with caplog.at_level(logging.DEBUG):
        for sent_headers, sent_body in (
            (headers, body),
            (headers, body),
            (headers, body + b" "),
            ({}, body),
        ):
            guard.receive("POST", "/webhook", sent_headers, sent_body)
    assert caplog.records
    for record in caplog.records:
        texts = [record.getMessage(), repr(record.args), repr(vars(record))]
        assert all(CANARY not in text for text in texts)


@pytest.mark.parametrize(
    "build",
    [
        lambda tmp: Guard(CANARY + "\n", queue=str(tmp / "q.db")),
        lambda tmp: Guard("\t" + CANARY, queue=str(tmp / "q.db")),
        lambda tmp: Guard(CANARY, scheme="no-such-scheme", queue=str(tmp / "q.db")),
        lambda tmp: Guard(CANARY, scheme="standard", queue=str(tmp / "q.db")),  # not base64
        lambda tmp: Guard(CANARY, config=GuardConfig(secrets=(CANARY,))),
        lambda tmp: GuardConfig(secrets=(CANARY, 42)),
        lambda tmp: GuardConfig(secrets=(CANARY,), max_body_bytes=0),
        lambda tmp: GuardConfig.from_mapping({"SECRET": CANARY, "SECRETS": 7}),
        lambda tmp: GuardConfig.from_mapping({"SECRET": CANARY, "MAX_BODY_BYTES": "many"}),
        lambda tmp: GuardConfig.from_mapping({"SECRET": CANARY, "REDACT_HEADERS": 3}),
        lambda tmp: GuardConfig(secrets=(CANARY,), redact_headers=("",)),
    ],
)
def test_no_secret_in_errors_from_bad_config(build: Any, tmp_path: Path) -> None:
    """Every configuration error raised beside the secret leaves it out of its text."""
    with pytest.raises(WebhookGuardError) as caught:
        build(tmp_path)
    texts = [str(caught.value), repr(caught.value), repr(caught.value.args)]
    assert all(CANARY not in text for text in texts)
