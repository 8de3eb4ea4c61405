"""``settings.WEBHOOK_GUARD``, read in one place, and the Guards it names, built on first use.

``WEBHOOK_GUARD = {"ENDPOINTS": {path: endpoint}}``; each endpoint is one of

- a ``Guard`` instance;
- a dotted path to one, ``"myproject.webhooks:guard"`` (or ``"myproject.webhooks.guard"``);
- a dict read by ``GuardConfig.from_mapping``: ``SECRET`` (or ``SECRETS``), ``SCHEME``,
  ``QUEUE`` / ``DB``, ``ENDPOINT``, ``MAX_BODY_BYTES``, ``TOLERANCE``, ``WORKER``,
  ``INSECURE_DEV_MODE``, plus ``HANDLERS``: a list of dotted paths (every event) or a dict
  ``{"invoice.*": "billing.hooks.on_invoice"}`` (pattern -> dotted path or list of them).
  ``ENDPOINT`` defaults to the path, so endpoints sharing a database never dedupe each other.

Nothing is built at import or in ``AppConfig.ready()``: a Guard is imported or built the first
time a request reaches its path, and again only when the object under that path changes
(``override_settings``, or a test that puts another Guard in the same ENDPOINTS dict).
"""

from __future__ import annotations

import atexit
import contextlib
import pkgutil
import threading
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections

from webhook_guard.core.config import GuardConfig
from webhook_guard.core.guard import Guard, Handler
from webhook_guard.exceptions import ConfigurationError

__all__ = [
    "SETTING",
    "WebhookGuardSettings",
    "build_guard",
    "conf",
    "django_connections",
    "prepare_worker",
]

SETTING = "WEBHOOK_GUARD"
HANDLERS_KEY = "HANDLERS"


class WebhookGuardSettings:
    """The one reader of ``settings.WEBHOOK_GUARD``. Reads on every access, so that
    ``override_settings`` works; only the Guards are cached."""

    def __init__(self) -> None:
        self._guards: dict[str, tuple[object, Guard]] = {}
        self._lock = threading.Lock()

    @property
    def is_set(self) -> bool:
        """True when ``settings.WEBHOOK_GUARD`` exists."""
        return hasattr(settings, SETTING)

    @property
    def endpoints(self) -> Mapping[str, object]:
        """path -> endpoint as written in the setting; ``{}`` when the setting is absent."""
        value = getattr(settings, SETTING, None)
        if value is None:
            return {}
        endpoints = value.get("ENDPOINTS") if isinstance(value, Mapping) else None
        if not isinstance(endpoints, Mapping):
            raise ImproperlyConfigured(
                f'{SETTING} should be a dict with an "ENDPOINTS" dict (run manage.py check)'
            )
        return endpoints

    def guard_for(self, path: str) -> Guard | None:
        """The Guard that answers ``path``, or None if ``path`` is not a webhook endpoint."""
        endpoint = self.endpoints.get(path)
        if endpoint is None:
            return None
        cached = self._guards.get(path)
        if cached is None or cached[0] is not endpoint:
            with self._lock:
                cached = self._guards.get(path)
                if cached is None or cached[0] is not endpoint:
                    if cached is not None and isinstance(cached[0], Mapping):
                        cached[1].close()  # we built it: its endpoint name goes to the new one
                    cached = (endpoint, _new_guard(path, endpoint))
                    self._guards[path] = cached
        return cached[1]

    def start_consumers(self) -> None:
        """Start the embedded consumers of every endpoint's store in this process (the
        middleware calls it on the first request of any path)."""
        for path in list(self.endpoints):
            try:
                guard = self.guard_for(path)
            except ImproperlyConfigured:
                continue  # that endpoint answers with its own error; the others still start
            if guard is not None and guard.config.worker == "embedded":
                guard.ensure_worker()


@contextlib.contextmanager
def django_connections() -> Iterator[None]:
    """Around each handler, what Django's request cycle does around each request: close the
    database connections that are unusable or past ``CONN_MAX_AGE``, so a long-running worker
    never reuses a dead one."""
    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()


def prepare_worker(guards: Sequence[Guard], modules: Sequence[types.ModuleType]) -> None:
    """For ``webhook-guard worker``: once Django is configured, every Guard's handlers run with
    Django's connection handling."""
    if settings.configured:
        for guard in guards:
            guard.add_handler_context(django_connections)


def _new_guard(path: str, endpoint: object) -> Guard:
    try:
        guard = build_guard(path, endpoint)
    except (ConfigurationError, ImportError, AttributeError, ValueError, TypeError) as error:
        raise ImproperlyConfigured(f"{SETTING}['ENDPOINTS'][{path!r}]: {error}") from error
    guard.add_handler_context(django_connections)
    if guard.config.worker == "embedded":
        # gunicorn workers run atexit on SIGTERM: let the worker finish the delivery in hand.
        atexit.register(guard.stop_worker)
    return guard


def build_guard(path: str, endpoint: object) -> Guard:
    """The Guard an ENDPOINTS entry names; raises ``ConfigurationError`` or ``ImportError``."""
    if isinstance(endpoint, Guard):
        return endpoint
    if isinstance(endpoint, str):
        found = pkgutil.resolve_name(endpoint)
        if not isinstance(found, Guard):
            raise ConfigurationError(f"{endpoint!r} is {type(found).__name__}, not a Guard")
        return found
    if isinstance(endpoint, Mapping):
        guard = Guard(config=guard_config(path, endpoint))
        for handler, patterns in handlers(endpoint.get(HANDLERS_KEY)):
            guard.add_handler(handler, *patterns)
        return guard
    raise ConfigurationError(
        f"an endpoint is a Guard, a dotted path to one or a dict, not {type(endpoint).__name__}"
    )


def guard_config(path: str, endpoint: Mapping[str, Any]) -> GuardConfig:
    return GuardConfig.from_mapping({"ENDPOINT": path, **endpoint})


def handlers(value: object) -> list[tuple[Handler, tuple[str, ...]]]:
    """``HANDLERS`` as (callable, event patterns) pairs; imports each dotted path."""
    if value is None:
        return []
    if isinstance(value, (str, list, tuple)):
        value = {"*": value}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{HANDLERS_KEY} should be a list of dotted paths or a dict")
    found: list[tuple[Handler, tuple[str, ...]]] = []
    for pattern, targets in value.items():
        for target in [targets] if isinstance(targets, str) else targets:
            handler = pkgutil.resolve_name(str(target))
            if not callable(handler):
                raise ConfigurationError(f"handler {target!r} is not callable")
            found.append((handler, (str(pattern),)))
    return found


conf = WebhookGuardSettings()
