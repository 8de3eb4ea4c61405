"""One frozen configuration object; each framework maps its own settings onto it here."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook_guard.core.retry import RetryPolicy
from webhook_guard.exceptions import ConfigurationError

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_DB_PATH = "webhook_guard.db"
WorkerMode = Literal["embedded", "external"]


@dataclass(frozen=True)
class GuardConfig:
    """Everything a Guard needs that is plain data.

    ``secrets`` may hold several values at once while a secret is rotated. ``queue`` is a URL
    (``sqlite:///path``) or a path to the SQLite file; None means ``WEBHOOK_GUARD_DB`` or
    ``./webhook_guard.db``.
    """

    secrets: tuple[str, ...] = ()
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
    insecure_dev_mode: bool = False

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0:
            raise ConfigurationError("max_body_bytes must be a positive number of bytes")
        if self.lease_seconds <= 0:
            raise ConfigurationError("lease_seconds must be a positive number of seconds")
        if self.worker not in ("embedded", "external"):
            raise ConfigurationError("worker must be 'embedded' or 'external'")
        if any(not s or s != s.strip() for s in self.secrets):
            # A trailing newline from a secrets file is the most common cause of mismatches.
            raise ConfigurationError(
                "a webhook secret is empty or has surrounding whitespace; strip it"
            )

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], prefix: str = "") -> GuardConfig:
        """Build from a settings mapping (``app.config``, a Django dict, ``os.environ``).

        Keys, after ``prefix``: ``SECRET`` (one, or several comma-separated), ``SECRETS`` (a
        list), ``SCHEME``, ``QUEUE``, ``DB``, ``ENDPOINT``, ``MAX_BODY_BYTES``, ``TOLERANCE``,
        ``WORKER``, ``INSECURE_DEV_MODE``.
        """

        def get(name: str) -> Any:
            value = settings.get(prefix + name)
            # An empty string (an unset environment variable) means "not given"; 0 does not.
            return None if value == "" else value

        kwargs: dict[str, Any] = {"secrets": _secrets(get("SECRET"), get("SECRETS"))}
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
        if get("INSECURE_DEV_MODE") is not None:
            kwargs["insecure_dev_mode"] = str(get("INSECURE_DEV_MODE")).lower() in (
                "1",
                "true",
                "yes",
            )
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GuardConfig:
        """The sample apps' environment: ``WEBHOOK_SECRET``, ``WEBHOOK_SCHEME``,
        ``WEBHOOK_GUARD_DB``, ``WEBHOOK_GUARD_QUEUE``, ``WEBHOOK_GUARD_WORKER``,
        ``WEBHOOK_GUARD_MAX_BODY_BYTES``."""
        env = os.environ if environ is None else environ
        return cls.from_mapping(
            {
                "SECRET": env.get("WEBHOOK_SECRET"),
                "SCHEME": env.get("WEBHOOK_SCHEME"),
                "QUEUE": env.get("WEBHOOK_GUARD_QUEUE"),
                "DB": env.get("WEBHOOK_GUARD_DB"),
                "WORKER": env.get("WEBHOOK_GUARD_WORKER"),
                "MAX_BODY_BYTES": env.get("WEBHOOK_GUARD_MAX_BODY_BYTES"),
            }
        )


def _secrets(one: Any, many: Any) -> tuple[str, ...]:
    values: list[str] = []
    # Spaces after commas are list formatting; a newline is a copy-paste mistake, refused later.
    if isinstance(one, str):
        values += [s.strip(" ") for s in one.split(",") if s.strip()]
    elif one is not None:
        raise ConfigurationError("the SECRET setting must be a string")
    if isinstance(many, str):
        values += [s.strip(" ") for s in many.split(",") if s.strip()]
    elif isinstance(many, Sequence):
        values += [str(s) for s in many]
    elif many is not None:
        raise ConfigurationError("the SECRETS setting must be a list of strings")
    return tuple(values)


def _number(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"setting {name} must be a number, got {value!r}") from None
