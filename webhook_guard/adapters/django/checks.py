"""System checks for ``settings.WEBHOOK_GUARD`` and ``MIDDLEWARE``, run by ``manage.py check``.

Every id, in one place (``CHECK_IDS``; a test keeps them unique and listed here):

=====================  ===================================================================
webhook_guard.E001     an endpoint has no secret (and no ``INSECURE_DEV_MODE``)
webhook_guard.E002     an endpoint names an unknown scheme
webhook_guard.E003     ``WebhookGuardMiddleware`` is missing from ``MIDDLEWARE``, or comes after
                       ``CsrfViewMiddleware``, ``AuthenticationMiddleware`` or
                       ``LoginRequiredMiddleware``
webhook_guard.E004     an endpoint's queue cannot work: unsupported queue URL, or the SQLite
                       file's directory is missing or not writable
webhook_guard.E005     ``WEBHOOK_GUARD`` is malformed: not a dict, no ``ENDPOINTS`` dict, a path
                       not starting with "/", an endpoint that does not import, is not a Guard
                       or has an invalid value; or it is missing while the middleware is installed
webhook_guard.E006     two endpoints have the same endpoint name on the same store (deliveries are
                       dispatched by endpoint name, so one would run the other's handlers)
webhook_guard.W001     an endpoint's cap is above ``DATA_UPLOAD_MAX_MEMORY_SIZE``: under ASGI,
                       Django refuses (413) bodies above the smaller of the two
=====================  ===================================================================

Checks import dotted paths but never open a database, touch a queue or start a thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from webhook_guard.adapters.django.conf import SETTING, build_guard, conf, guard_config, handlers
from webhook_guard.core.guard import Guard
from webhook_guard.core.queue import Queue, store_key
from webhook_guard.core.schemes import get_scheme
from webhook_guard.exceptions import ConfigurationError, MissingSecret
from webhook_guard.queues import open_queue
from webhook_guard.queues.sqlite import SQLiteQueue

TAG = "webhook_guard"
EXAMPLE = f'{SETTING} = {{"ENDPOINTS": {{"/webhook": "myproject.webhooks:guard"}}}}'
CHECK_IDS = {
    "E001": "missing secret",
    "E002": "unknown scheme",
    "E003": "middleware order",
    "E004": "queue unusable",
    "E005": "malformed WEBHOOK_GUARD",
    "E006": "duplicate endpoint name on one store",
    "W001": "cap above DATA_UPLOAD_MAX_MEMORY_SIZE",
}
OUR_MIDDLEWARE = (
    "webhook_guard.adapters.django.WebhookGuardMiddleware",
    "webhook_guard.adapters.django.middleware.WebhookGuardMiddleware",
)
MUST_COME_AFTER_US = (
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
)


def _error(code: str, msg: str, hint: str | None = None) -> Error:
    return Error(msg, hint=hint, id=f"{TAG}.{code}")


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E003 (and E005 for middleware without the setting)."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    ours = [i for i, name in enumerate(middleware) if name in OUR_MIDDLEWARE]
    if not ours:
        if not conf.is_set:
            return []
        return [
            _error(
                "E003",
                f"{SETTING} is set but WebhookGuardMiddleware is not in MIDDLEWARE.",
                hint=f"Add '{OUR_MIDDLEWARE[0]}' first in MIDDLEWARE.",
            )
        ]
    if not conf.is_set:
        return [
            _error(
                "E005",
                f"WebhookGuardMiddleware is installed but {SETTING} is not set.",
                hint=f"Set {EXAMPLE}.",
            )
        ]
    before_us = [name for name in middleware[: ours[0]] if name in MUST_COME_AFTER_US]
    return [
        _error(
            "E003",
            f"WebhookGuardMiddleware should come before {name} in MIDDLEWARE.",
            hint="Put WebhookGuardMiddleware first, so nothing reads or guards a webhook first.",
        )
        for name in before_us
    ]


def check_endpoints(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001, E002, E004, E005, W001: each endpoint of ``WEBHOOK_GUARD``."""
    if not conf.is_set:
        return []
    value = getattr(settings, SETTING)
    endpoints = value.get("ENDPOINTS") if isinstance(value, Mapping) else None
    if not isinstance(endpoints, Mapping) or not endpoints:
        return [
            _error(
                "E005",
                f'{SETTING} should be a dict with a non-empty "ENDPOINTS" dict.',
                hint=f"e.g. {EXAMPLE}",
            )
        ]
    messages: list[CheckMessage] = []
    names: dict[tuple[str, str], tuple[str, object]] = {}  # (store, endpoint) -> (path, source)
    for path, endpoint in endpoints.items():
        where = f"{SETTING}['ENDPOINTS'][{path!r}]"
        if not isinstance(path, str) or not path.startswith("/"):
            messages.append(_error("E005", f"{where}: a path should be a string starting with /."))
            continue
        if isinstance(endpoint, Mapping):
            messages += _check_dict(path, where, endpoint)
            name = _dict_name(path, endpoint)
            source: object = endpoint
        else:
            try:
                guard = build_guard(path, endpoint)
            except MissingSecret as error:  # the dotted path's Guard was built without one
                messages.append(_error("E001", f"{where}: {error}"))
                continue
            except ConfigurationError as error:
                code = "E006" if "two Guards with endpoint" in str(error) else "E005"
                messages.append(_error(code, f"{where}: {error}"))
                continue
            except (ImportError, AttributeError, ValueError) as error:
                messages.append(_error("E005", f"{where}: {error}"))
                continue
            messages += _check_guard(where, guard)
            name, source = (store_key(guard.queue), guard.endpoint), guard
        if name is None:
            continue
        seen = names.setdefault(name, (path, source))
        if seen[1] is not source:
            messages.append(
                _error(
                    "E006",
                    f"{where} and {SETTING}['ENDPOINTS'][{seen[0]!r}] both use endpoint name "
                    f"{name[1]!r} on one store.",
                    hint='Give each its own "ENDPOINT" (or endpoint=): deliveries are dispatched '
                    "by endpoint name.",
                )
            )
    return messages


def _dict_name(path: str, endpoint: Mapping[str, Any]) -> tuple[str, str] | None:
    """(store, endpoint name) a dict endpoint will use, or None if its settings are invalid."""
    try:
        config = guard_config(path, endpoint)
        return store_key(open_queue(config.queue)), config.endpoint
    except (ConfigurationError, ValueError, TypeError):
        return None


def _check_dict(path: str, where: str, endpoint: Mapping[str, Any]) -> list[CheckMessage]:
    try:
        config = guard_config(path, endpoint)
        handlers(endpoint.get("HANDLERS"))
    except (ConfigurationError, ImportError, AttributeError, ValueError, TypeError) as error:
        return [_error("E005", f"{where}: {error}")]
    messages: list[CheckMessage] = []
    if not config.secrets and not config.insecure_dev_mode:
        hint = 'Set "SECRET" (several: comma-separated).'
        messages.append(_error("E001", f"{where} has no secret.", hint=hint))
    try:
        get_scheme(config.scheme)
    except ConfigurationError as error:
        messages.append(_error("E002", f"{where}: {error}"))
    try:
        queue = open_queue(config.queue)  # lazy: nothing is opened
    except ConfigurationError as error:
        return [*messages, _error("E004", f"{where}: {error}")]
    return messages + _check_queue(where, queue) + _check_cap(where, config.max_body_bytes)


def _check_guard(where: str, guard: Guard) -> list[CheckMessage]:
    return _check_queue(where, guard.queue) + _check_cap(where, guard.max_body_bytes)


def _check_queue(where: str, queue: Queue) -> list[CheckMessage]:
    if not isinstance(queue, SQLiteQueue):
        return []
    path = os.path.abspath(queue.path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        problem = f"the directory of its SQLite queue {path} does not exist"
    elif not os.access(directory, os.W_OK | os.X_OK):
        problem = f"the directory of its SQLite queue {path} is not writable"
    elif os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        problem = f"its SQLite queue {path} is not readable and writable"
    else:
        return []
    return [_error("E004", f"{where}: {problem}.", hint="Set DB/QUEUE or WEBHOOK_GUARD_DB.")]


def _check_cap(where: str, cap: int) -> list[CheckMessage]:
    django_cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if django_cap is None or cap <= django_cap:
        return []
    return [
        Warning(
            f"{where}: max body of {cap} bytes is above DATA_UPLOAD_MAX_MEMORY_SIZE "
            f"({django_cap}); under ASGI, bodies above {django_cap} bytes get 413.",
            hint="Raise DATA_UPLOAD_MAX_MEMORY_SIZE or lower the endpoint's MAX_BODY_BYTES.",
            id=f"{TAG}.W001",
        )
    ]
