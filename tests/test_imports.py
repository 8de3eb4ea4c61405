"""Import hygiene: the package's top level loads no framework and no queue engine."""

from __future__ import annotations

import json
import subprocess
import sys

FOREIGN = (
    "flask",
    "werkzeug",
    "django",
    "starlette",
    "fastapi",
    "celery",
    "rq",
    "dramatiq",
    "arq",
    "redis",
    "kombu",
    "psycopg",
)


def test_importing_the_package_pulls_in_no_framework_or_engine() -> None:
    """``import webhook_guard`` (and its core, queues, worker and CLI) loads none of them."""
    code = (
        "import sys, json, webhook_guard, webhook_guard.core.guard, webhook_guard.queues, "
        "webhook_guard.worker, webhook_guard.cli, webhook_guard.testing; "
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code])))
    assert loaded.isdisjoint(FOREIGN), loaded & set(FOREIGN)
    assert "webhook_guard" in loaded


def test_public_names_are_exported() -> None:
    """__all__ lists what the top level offers, sorted, and each name exists."""
    import webhook_guard

    assert webhook_guard.__all__ == sorted(webhook_guard.__all__)
    for name in webhook_guard.__all__:
        assert getattr(webhook_guard, name) is not None
