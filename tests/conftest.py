"""Fixtures shared across test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from webhook_guard.core.events import add_observer, observers, remove_observer


@pytest.fixture
def no_observers() -> Iterator[None]:
    """The test starts and ends with no observer registered, whatever it installed."""
    before = observers()
    for observer in before:
        remove_observer(observer)
    yield
    for observer in observers():
        remove_observer(observer)
    for observer in before:
        add_observer(observer)
