"""Signing secrets: a type that never shows its value, and the one rule for several in a string.

``Secret`` wraps a secret so that ``repr``, ``str``, f-strings, dataclass reprs, logging and
exception messages show ``Secret('****')``; only ``reveal()`` gives the value (to derive the
HMAC key). ``split_secrets`` is the rule every place that reads several secrets from one string
applies (``Guard("a,b")``, ``GuardConfig.from_mapping``/``from_env``, the CLI): comma-separated,
spaces around items stripped, empty items dropped. A secret that contains a comma cannot be
given in one string: pass a list (``Guard(["has,comma"])``, the ``SECRETS`` setting as a list).

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import hmac
from typing import Any

__all__ = ["MASK", "Secret", "split_secrets"]

MASK = "Secret('****')"


class Secret:
    """A signing secret whose value shows only through ``reveal()``.

    Immutable and hashable; two Secrets are equal when their values are (compared in constant
    time). Never equal to a plain string, so a comparison cannot be mistaken for a reveal.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            # The value is not echoed: it may be the secret in the wrong type.
            raise TypeError(f"a secret must be a string, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The secret itself: for deriving the HMAC key, never for printing."""
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode("utf-8"), other._value.encode("utf-8"))

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        # Pickling (multiprocessing, a config copied into a worker) keeps the value.
        return (Secret, (self._value,))


def split_secrets(value: str) -> tuple[str, ...]:
    """The secrets one string holds: comma-separated, spaces around each stripped, blank items
    dropped (``"old, new"`` -> ``("old", "new")``). Only spaces are stripped: a newline or tab
    inside an item stays, so that a secret pasted with one is refused by the config rather than
    silently changed. A secret with a comma in it must be passed as a list, never in one
    string."""
    return tuple(item.strip(" ") for item in value.split(",") if item.strip())
