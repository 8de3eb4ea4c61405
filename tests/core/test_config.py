"""webhook_guard.core.config: GuardConfig from a settings mapping and from the environment."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from webhook_guard.core.config import DEFAULT_MAX_BODY_BYTES, GuardConfig
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.exceptions import ConfigurationError

SECRET = "s3cr3t-Zq9-value"


def revealed(config: GuardConfig) -> tuple[str, ...]:
    """The config's secrets as plain strings (they are kept as masked Secrets)."""
    return tuple(secret.reveal() for secret in config.secrets)


def test_defaults() -> None:
    """An empty mapping gives the documented defaults."""
    config = GuardConfig.from_mapping({})
    assert config == GuardConfig()
    assert config.secrets == ()
    assert config.scheme == "cloudaipilot"
    assert config.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert config.worker == "embedded"
    assert config.queue is None
    assert config.retry == RetryPolicy()


def test_comma_separated_secrets() -> None:
    """SECRET may hold several comma-separated secrets; spaces around commas are dropped."""
    config = GuardConfig.from_mapping({"SECRET": "old-secret, new-secret ,third"})
    assert revealed(config) == ("old-secret", "new-secret", "third")


def test_empty_items_between_commas_are_skipped() -> None:
    """A trailing or doubled comma does not add an empty secret."""
    assert revealed(GuardConfig.from_mapping({"SECRET": "a,,b,"})) == ("a", "b")


def test_secrets_list_keeps_commas_inside_a_secret() -> None:
    """SECRETS as a list takes each item whole, commas included, after SECRET's items."""
    config = GuardConfig.from_mapping({"SECRET": "first", "SECRETS": ["has,comma", "plain"]})
    assert revealed(config) == ("first", "has,comma", "plain")


def test_secrets_as_string_is_split_too() -> None:
    """SECRETS given as one string is split on commas like SECRET."""
    assert revealed(GuardConfig.from_mapping({"SECRETS": "a,b"})) == ("a", "b")


@pytest.mark.parametrize("value", [SECRET + "\n", SECRET + "\r\n", "\t" + SECRET, SECRET + " \n"])
def test_secret_with_surrounding_whitespace_is_refused(value: str) -> None:
    """A secret with a trailing newline (a secrets file) is refused, naming the problem only."""
    with pytest.raises(ConfigurationError) as caught:
        GuardConfig.from_mapping({"SECRET": value})
    message = str(caught.value)
    assert "whitespace" in message
    assert SECRET not in message


def test_secret_with_newline_in_a_list_is_refused() -> None:
    """The same check applies to every item of SECRETS."""
    with pytest.raises(ConfigurationError) as caught:
        GuardConfig.from_mapping({"SECRETS": ["fine", SECRET + "\n"]})
    assert SECRET not in str(caught.value)


def test_secret_with_newline_from_env_is_refused() -> None:
    """WEBHOOK_SECRET ending in a newline is refused, without echoing it."""
    with pytest.raises(ConfigurationError) as caught:
        GuardConfig.from_env({"WEBHOOK_SECRET": f"old-one,{SECRET}\n"})
    assert "whitespace" in str(caught.value)
    assert SECRET not in str(caught.value) and "old-one" not in str(caught.value)


@pytest.mark.parametrize(("setting", "value"), [("SECRET", 12345), ("SECRETS", 12345)])
def test_non_string_secret_setting_names_it(setting: str, value: Any) -> None:
    """A SECRET or SECRETS setting of the wrong type is refused, naming the setting."""
    with pytest.raises(ConfigurationError, match=setting):
        GuardConfig.from_mapping({setting: value})


@pytest.mark.parametrize("value", ["lots", "1.5", "1e6", "1 MiB", [1]])
def test_bad_max_body_bytes_names_the_setting(value: Any) -> None:
    """A MAX_BODY_BYTES that is not an integer is refused, naming the prefixed setting."""
    with pytest.raises(ConfigurationError, match="WEBHOOK_GUARD_MAX_BODY_BYTES"):
        GuardConfig.from_mapping({"WEBHOOK_GUARD_MAX_BODY_BYTES": value}, prefix="WEBHOOK_GUARD_")


@pytest.mark.parametrize("value", ["0", "-1", -5])
def test_non_positive_max_body_bytes_is_refused(value: Any) -> None:
    """A zero or negative MAX_BODY_BYTES is refused, naming max_body_bytes."""
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        GuardConfig.from_mapping({"MAX_BODY_BYTES": value})


def test_bad_max_body_bytes_from_env_names_the_setting() -> None:
    """WEBHOOK_GUARD_MAX_BODY_BYTES that is not a number is refused, naming MAX_BODY_BYTES."""
    with pytest.raises(ConfigurationError, match="MAX_BODY_BYTES"):
        GuardConfig.from_env({"WEBHOOK_SECRET": SECRET, "WEBHOOK_GUARD_MAX_BODY_BYTES": "big"})


def test_bad_tolerance_names_the_setting() -> None:
    """A TOLERANCE that is not a number is refused, naming the setting."""
    with pytest.raises(ConfigurationError, match="TOLERANCE"):
        GuardConfig.from_mapping({"TOLERANCE": "five minutes"})


def test_bad_worker_is_refused() -> None:
    """WORKER must be embedded or external."""
    with pytest.raises(ConfigurationError, match="worker"):
        GuardConfig.from_mapping({"WORKER": "sideways"})


def test_from_mapping_reads_every_key_after_the_prefix() -> None:
    """Every documented key is read after the prefix; unprefixed keys are ignored."""
    settings = {
        "WEBHOOK_GUARD_SECRET": SECRET,
        "WEBHOOK_GUARD_SCHEME": "github",
        "WEBHOOK_GUARD_DB": "/tmp/wg.db",
        "WEBHOOK_GUARD_ENDPOINT": "github-hooks",
        "WEBHOOK_GUARD_MAX_BODY_BYTES": "2048",
        "WEBHOOK_GUARD_TOLERANCE": "60",
        "WEBHOOK_GUARD_WORKER": "external",
        "WEBHOOK_GUARD_INSECURE_DEV_MODE": "true",
        "WEBHOOK_GUARD_REQUEST_DEADLINE": "2.5",
        "SCHEME": "stripe",
    }
    config = GuardConfig.from_mapping(settings, prefix="WEBHOOK_GUARD_")
    assert config == GuardConfig(
        secrets=(SECRET,),
        scheme="github",
        queue="/tmp/wg.db",
        endpoint="github-hooks",
        max_body_bytes=2048,
        tolerance_seconds=60.0,
        worker="external",
        insecure_dev_mode=True,
        request_deadline=2.5,
    )


@pytest.mark.parametrize("value", [0, -1.0])
def test_non_positive_request_deadline_is_refused(value: float) -> None:
    with pytest.raises(ConfigurationError, match="request_deadline"):
        GuardConfig(request_deadline=value)


def test_request_deadline_defaults_to_five_seconds_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert GuardConfig().request_deadline == 5.0
    monkeypatch.setenv("WEBHOOK_GUARD_REQUEST_DEADLINE", "3")
    assert GuardConfig.from_mapping({}).request_deadline == 3.0


def test_queue_wins_over_db() -> None:
    """When both QUEUE and DB are set, QUEUE is used."""
    config = GuardConfig.from_mapping({"QUEUE": "sqlite:///q.db", "DB": "other.db"})
    assert config.queue == "sqlite:///q.db"


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("YES", True), ("no", False)])
def test_insecure_dev_mode_is_opt_in(value: str, expected: bool) -> None:
    """INSECURE_DEV_MODE is on only for 1/true/yes."""
    assert GuardConfig.from_mapping({"INSECURE_DEV_MODE": value}).insecure_dev_mode is expected


def test_from_env_reads_the_sample_app_variables() -> None:
    """from_env reads WEBHOOK_SECRET (comma-separated), WEBHOOK_SCHEME and WEBHOOK_GUARD_*."""
    env = {
        "WEBHOOK_SECRET": "old-secret,new-secret",
        "WEBHOOK_SCHEME": "standard",
        "WEBHOOK_GUARD_DB": "./deliveries.db",
        "WEBHOOK_GUARD_WORKER": "external",
        "WEBHOOK_GUARD_MAX_BODY_BYTES": "4096",
    }
    config = GuardConfig.from_env(env)
    assert revealed(config) == ("old-secret", "new-secret")
    assert config.scheme == "standard"
    assert config.queue == "./deliveries.db"
    assert config.worker == "external"
    assert config.max_body_bytes == 4096


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument, from_env reads os.environ."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("WEBHOOK_SCHEME", "slack")
    config = GuardConfig.from_env()
    assert (revealed(config), config.scheme) == ((SECRET,), "slack")


def test_config_is_frozen() -> None:
    """GuardConfig cannot be changed after it is built."""
    config = GuardConfig(secrets=(SECRET,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.scheme = "github"  # type: ignore[misc]


def test_zero_max_body_bytes_is_refused_not_defaulted() -> None:
    """MAX_BODY_BYTES=0 (an int in app.config) is an error, not silently the 1 MiB default."""
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        GuardConfig.from_mapping({"SECRET": "s", "MAX_BODY_BYTES": 0})


def test_empty_environment_values_count_as_unset() -> None:
    """WEBHOOK_SCHEME= (empty) keeps the default scheme instead of failing."""
    config = GuardConfig.from_env({"WEBHOOK_SECRET": "s", "WEBHOOK_SCHEME": ""})
    assert config.scheme == "cloudaipilot"
