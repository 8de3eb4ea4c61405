"""Case-insensitive request headers, built once from whatever the adapter has."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Union

from webhook_guard.exceptions import MalformedSignature

HeadersLike = Union[Mapping[str, str], Iterable[tuple[str, str]], "Headers"]

# Never stored, queued or shown: headers whose name says they carry a credential
# (Authorization, Proxy-Authorization, Cookie, X-Api-Key, X-Auth-Token, ...).
_CREDENTIAL_WORDS = (
    "auth",
    "cookie",
    "token",
    "secret",
    "password",
    "api-key",
    "apikey",
    "session",
)


@functools.lru_cache(maxsize=1024)
def is_credential_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


class Headers:
    """Read-only, case-insensitive multi-map of header name -> values, in arrival order."""

    __slots__ = ("_items",)

    def __init__(self, raw: HeadersLike = ()) -> None:
        if isinstance(raw, Headers):
            self._items: dict[str, list[str]] = {k: list(v) for k, v in raw._items.items()}
            return
        pairs = raw.items() if isinstance(raw, Mapping) else raw
        self._items = {}
        for name, value in pairs:
            self._items.setdefault(name.lower(), []).append(value)

    def get(self, name: str) -> str | None:
        """The header's value, or None. Several different values for one header are refused:
        guessing which copy a proxy appended would let an attacker choose."""
        values = self._items.get(name.lower())
        if not values:
            return None
        if len(values) > 1 and any(v != values[0] for v in values[1:]):
            raise MalformedSignature(
                f"header {name!r} was sent {len(values)} times with different values"
            )
        return values[0]

    def get_all(self, name: str) -> list[str]:
        return list(self._items.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for name, values in self._items.items():
            for value in values:
                yield name, value

    def safe_items(self) -> list[tuple[str, str]]:
        """All headers except credentials: what may be stored, queued and shown."""
        return [(k, v) for k, v in self if not is_credential_header(k)]

    def __repr__(self) -> str:
        return f"Headers({self.safe_items()!r})"
