"""The layers point one way: a lower layer never imports a higher one (checked on the source)."""

from __future__ import annotations

import ast
from pathlib import Path

import webhook_guard

PACKAGE = Path(webhook_guard.__file__).parent

# Lowest first. A module may import webhook_guard modules of its own layer or lower ones.
LAYERS: list[tuple[str, ...]] = [
    ("webhook_guard.exceptions", "webhook_guard._version"),
    ("webhook_guard.core",),
    ("webhook_guard.stores",),
    ("webhook_guard.queues", "webhook_guard.worker"),
]
TOP = len(LAYERS)  # adapters, CLI, dashboard, metrics, history, testing, the package itself


def layer_of(module: str) -> int:
    """The layer index of a dotted module name (``TOP`` for everything above the queues)."""
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return TOP


def module_name(path: Path) -> str:
    """The dotted name of a source file of the package."""
    parts = ["webhook_guard", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every webhook_guard module ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("webhook_guard")}


def test_no_module_imports_a_higher_layer() -> None:
    """core imports no store, queue or adapter; stores import no queue; queues no adapter."""
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        own = layer_of(name)
        for target in sorted(imported(path)):
            if layer_of(target) > own:
                violations.append(f"{name} imports {target}")
    assert not violations, "\n".join(violations)


def test_the_check_sees_a_violation() -> None:
    """The checker itself: an import from core into a queue module counts as upward."""
    assert layer_of("webhook_guard.queues.sqlite") > layer_of("webhook_guard.core.guard")
    assert layer_of("webhook_guard.adapters.flask") == TOP
    assert layer_of("webhook_guard.core") < layer_of("webhook_guard.stores.redis")
