"""Every public name of the package has a docstring: modules, classes, functions, and the
public methods and properties of public classes (the reference is generated from them)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil

import pytest

import webhook_guard

# Modules that need what one venv cannot hold beside the others (arq needs redis<6, which
# Celery's kombu refuses): checked in .venv-arq by `make test-arq`'s own run of this file.
OPTIONAL = {"webhook_guard.queues.arq": "arq"}
# The demo's app module builds the sample Guard at import from WEBHOOK_SECRET, as gunicorn
# serves it: imported here with the sample environment.
APP_MODULES = {"webhook_guard.demo.flask_app"}
# Modules that declare a task on Django's configured TASKS backend at import: imported once the
# tests' Django settings are configured (tests/adapters/transports_django.py).
DJANGO_MODULES = {"webhook_guard.queues.django_tasks": "django_tasks"}


def public_names() -> list[tuple[str, object]]:
    """(qualified name, object) of every public module, class, function, method and property."""
    found: list[tuple[str, object]] = []
    for info in pkgutil.walk_packages(webhook_guard.__path__, "webhook_guard."):
        if info.name.endswith("__main__"):
            continue
        if info.name in OPTIONAL and importlib.util.find_spec(OPTIONAL[info.name]) is None:
            continue
        if info.name in DJANGO_MODULES:
            if importlib.util.find_spec(DJANGO_MODULES[info.name]) is None:
                continue
            from tests.adapters.transports_django import configure

            configure()
        if info.name in APP_MODULES:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("WEBHOOK_SECRET", "docstring-check")
                patch.setenv("WEBHOOK_GUARD_WORKER", "external")
                patch.setenv("WEBHOOK_GUARD_DB", ":memory:")
                module = importlib.import_module(info.name)
        else:
            module = importlib.import_module(info.name)
        found.append((info.name, module))
        names = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
        for name in names:
            value = getattr(module, name, None)
            if getattr(value, "__module__", None) != module.__name__:
                continue  # re-exported: checked where it is defined
            if inspect.isfunction(value):
                found.append((f"{info.name}.{name}", value))
            elif inspect.isclass(value):
                found.append((f"{info.name}.{name}", value))
                for member, attribute in vars(value).items():
                    target = attribute.fget if isinstance(attribute, property) else attribute
                    if member[0] != "_" and inspect.isfunction(target):
                        found.append((f"{info.name}.{name}.{member}", target))
    return found


def test_every_public_name_has_a_docstring() -> None:
    """No public module, class, function, method or property without a docstring."""
    pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:  # the Django adapter's modules read settings at import
        from tests.adapters.transports_django import configure

        configure()
    missing = [name for name, value in public_names() if not (value.__doc__ or "").strip()]
    assert not missing, "without a docstring:\n" + "\n".join(missing)


def test_the_check_sees_a_missing_docstring() -> None:
    """The walk finds methods and properties, so a missing docstring there would be caught."""
    names = dict(public_names())
    assert "webhook_guard.core.guard.Guard.receive" in names
    assert "webhook_guard.core.guard.Guard.endpoint" in names
