"""One frozen configuration object; each framework maps its own settings onto it here."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook_guard.core.headers import normalise_patterns
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.core.secrets import Secret, split_secrets
from webhook_guard.exceptions import ConfigurationError

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_DB_PATH = "webhook_guard.db"
WorkerMode = Literal["embedded", "external"]

# The environment every Guard reads for a setting its code or framework settings do not give:
# variable -> (GuardConfig field, kind). ``WEBHOOK_SECRET`` applies to Guards built in code.
ENVIRONMENT: dict[str, tuple[str, type]] = {
    "WEBHOOK_SECRET": ("secrets", str),
    "WEBHOOK_SCHEME": ("scheme", str),
    "WEBHOOK_GUARD_DB": ("queue", str),
    "WEBHOOK_GUARD_QUEUE": ("queue", str),  # wins over WEBHOOK_GUARD_DB
    "WEBHOOK_GUARD_WORKER": ("worker", str),
    "WEBHOOK_GUARD_MAX_BODY_BYTES": ("max_body_bytes", int),
    "WEBHOOK_GUARD_TOLERANCE": ("tolerance_seconds", float),
    "WEBHOOK_GUARD_LEASE_SECONDS": ("lease_seconds", float),
    "WEBHOOK_GUARD_HANDLER_TIMEOUT": ("handler_timeout", float),
    "WEBHOOK_GUARD_REQUEST_DEADLINE": ("request_deadline", float),
}
# An attempt whose handlers run longer is recorded as timed out and retried; the stuck thread
# is left behind (Python cannot stop it) and the consumer goes on with a new one.
DEFAULT_HANDLER_TIMEOUT_SECONDS = 300.0
# Every request is answered within this many seconds of reaching the adapter: half the usual
# sender timeout (10 s), leaving room for the network and a server's own queueing.
DEFAULT_REQUEST_DEADLINE_SECONDS = 5.0


@dataclass(frozen=True)
class GuardConfig:
    """Everything a Guard needs that is plain data.

    ``secrets`` may hold several values at once while a secret is rotated; plain strings are
    kept as ``Secret`` (whose repr is masked), so no repr of the config shows them. A single
    string is split by ``split_secrets`` (comma-separated), as everywhere else. ``queue`` is a
    URL (``sqlite:///path``) or a path to the SQLite file; None means ``WEBHOOK_GUARD_DB`` or
    ``./webhook_guard.db``. ``redact_headers``: header-name patterns never stored, queued or
    shown, on top of the defaults (``headers.CREDENTIAL_PATTERNS``).
    """

    secrets: tuple[str | Secret, ...] = ()
    scheme: str = "cloudaipilot"
    queue: str | None = None
    endpoint: str = "default"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tolerance_seconds: float | None = None
    worker: WorkerMode = "embedded"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long a worker's claim lasts without a heartbeat: a crashed worker's delivery
    # comes back after this long.
    lease_seconds: float = 60.0
    handler_timeout: float = DEFAULT_HANDLER_TIMEOUT_SECONDS
    request_deadline: float = DEFAULT_REQUEST_DEADLINE_SECONDS
    insecure_dev_mode: bool = False
    redact_headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Frozen: the normalised values are set the way dataclasses set fields.
        secrets = _as_secrets(self.secrets)
        object.__setattr__(self, "secrets", secrets)
        object.__setattr__(self, "redact_headers", _redact_patterns(self.redact_headers))
        if self.max_body_bytes <= 0:
            raise ConfigurationError("max_body_bytes must be a positive number of bytes")
        if self.lease_seconds <= 0:
            raise ConfigurationError("lease_seconds must be a positive number of seconds")
        if self.handler_timeout <= 0:
            raise ConfigurationError("handler_timeout must be a positive number of seconds")
        if self.request_deadline <= 0:
            raise ConfigurationError("request_deadline must be a positive number of seconds")
        if self.worker not in ("embedded", "external"):
            raise ConfigurationError("worker must be 'embedded' or 'external'")
        if any(not s or s.reveal() != s.reveal().strip() for s in secrets):
            # A trailing newline from a secrets file is the most common cause of mismatches.
            raise ConfigurationError(
                "a webhook secret is empty or has surrounding whitespace; strip it"
            )

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], prefix: str = "") -> GuardConfig:
        """Build from a settings mapping (``app.config``, a Django dict, ``os.environ``).

        Keys, after ``prefix``: ``SECRET`` (one, or several comma-separated), ``SECRETS`` (a
        list), ``SCHEME``, ``QUEUE``, ``DB``, ``ENDPOINT``, ``MAX_BODY_BYTES``, ``TOLERANCE``,
        ``WORKER``, ``LEASE_SECONDS``, ``HANDLER_TIMEOUT``, ``REQUEST_DEADLINE``,
        ``INSECURE_DEV_MODE``, ``REDACT_HEADERS`` (header-name patterns, a list or
        comma-separated). A key the mapping
        lacks falls back to the environment (``ENVIRONMENT``), except the secret. Secrets in a
        string are split by ``split_secrets``; a secret with a comma goes in a ``SECRETS`` list.
        """

        def get(name: str) -> Any:
            value = settings.get(prefix + name)
            # An empty string (an unset environment variable) means "not given"; 0 does not.
            return None if value == "" else value

        # What the mapping does not give, the environment may (``environment_settings``).
        kwargs: dict[str, Any] = environment_settings(secrets=False)
        kwargs["secrets"] = _secrets(get("SECRET"), get("SECRETS"))
        if get("SCHEME") is not None:
            kwargs["scheme"] = str(get("SCHEME"))
        if get("QUEUE") is not None or get("DB") is not None:
            kwargs["queue"] = str(get("QUEUE") or get("DB"))
        if get("ENDPOINT") is not None:
            kwargs["endpoint"] = str(get("ENDPOINT"))
        if get("MAX_BODY_BYTES") is not None:
            kwargs["max_body_bytes"] = _number(
                prefix + "MAX_BODY_BYTES", get("MAX_BODY_BYTES"), int
            )
        if get("TOLERANCE") is not None:
            kwargs["tolerance_seconds"] = _number(prefix + "TOLERANCE", get("TOLERANCE"), float)
        if get("WORKER") is not None:
            kwargs["worker"] = str(get("WORKER"))
        if get("HANDLER_TIMEOUT") is not None:
            kwargs["handler_timeout"] = _number(
                prefix + "HANDLER_TIMEOUT", get("HANDLER_TIMEOUT"), float
            )
        if get("REQUEST_DEADLINE") is not None:
            kwargs["request_deadline"] = _number(
                prefix + "REQUEST_DEADLINE", get("REQUEST_DEADLINE"), float
            )
        if get("LEASE_SECONDS") is not None:
            kwargs["lease_seconds"] = _number(prefix + "LEASE_SECONDS", get("LEASE_SECONDS"), float)
        if get("REDACT_HEADERS") is not None:
            kwargs["redact_headers"] = _patterns(prefix + "REDACT_HEADERS", get("REDACT_HEADERS"))
        if get("INSECURE_DEV_MODE") is not None:
            kwargs["insecure_dev_mode"] = str(get("INSECURE_DEV_MODE")).lower() in (
                "1",
                "true",
                "yes",
            )
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GuardConfig:
        """Every setting from the environment (``ENVIRONMENT`` lists the variables)."""
        return cls(**environment_settings(environ))


def environment_settings(
    environ: Mapping[str, str] | None = None, *, secrets: bool = True
) -> dict[str, Any]:
    """GuardConfig fields set by the environment (unset and empty variables are left out).
    ``secrets=False`` leaves ``WEBHOOK_SECRET`` out (framework settings name their own)."""
    env = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    # In ENVIRONMENT's order, so WEBHOOK_GUARD_QUEUE (after WEBHOOK_GUARD_DB) wins.
    for variable, (name, kind) in ENVIRONMENT.items():
        value = env.get(variable)
        if not value or (name == "secrets" and not secrets):
            continue
        if name == "secrets":
            found[name] = _secrets(value, None)
        elif kind is str:
            found[name] = value
        else:
            found[name] = _number(variable, value, kind)
    return found


def _secrets(one: Any, many: Any) -> tuple[str | Secret, ...]:
    values: list[str | Secret] = []
    # Spaces after commas are list formatting; a newline is a copy-paste mistake, refused later.
    if isinstance(one, (str, Secret)):
        values += split_secrets(one) if isinstance(one, str) else [one]
    elif one is not None:
        raise ConfigurationError("the SECRET setting must be a string")
    if isinstance(many, str):
        values += split_secrets(many)
    elif isinstance(many, Sequence):
        values += [s if isinstance(s, Secret) else str(s) for s in many]
    elif many is not None:
        raise ConfigurationError("the SECRETS setting must be a list of strings")
    return tuple(values)


def _as_secrets(value: Any) -> tuple[Secret, ...]:
    """``secrets`` as given (a string, or a sequence of strings and Secrets) as Secrets."""
    if isinstance(value, str):
        value = split_secrets(value)
    elif isinstance(value, Secret):
        value = (value,)
    try:
        return tuple(Secret(item) for item in value)
    except TypeError:
        # Neither the value nor its items are echoed: one of them may be the secret.
        raise ConfigurationError("secrets must be strings (several: a list of strings)") from None


def _patterns(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, Sequence):
        return tuple(str(p) for p in value)
    raise ConfigurationError(f"setting {name} must be a list of header-name patterns")


def _redact_patterns(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        return normalise_patterns(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            "redact_headers must be non-empty header-name patterns (strings)"
        ) from None


def _number(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"setting {name} must be a number, got {value!r}") from None
