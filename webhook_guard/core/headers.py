"""Case-insensitive request headers, built once from whatever the adapter has."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Union

from webhook_guard.exceptions import MalformedSignature

HeadersLike = Union[Mapping[str, str], Iterable[tuple[str, str]], "Headers"]

# Never stored, queued or shown: headers whose name holds one of these (lower-cased, "_" read
# as "-"), because they carry a credential or a signature: Authorization, Cookie, X-Api-Key,
# X-Access-Key, X-Signing-Key, X-Auth-Token, X-Hub-Signature-256, ... A stored signature would
# let anyone who reads the history replay the request. A Guard adds its own (``redact_headers``).
CREDENTIAL_PATTERNS = (
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "session",
    "signature",
    "auth",
    "cookie",
    "credential",
)


def normalise_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """Header-name patterns as matched: lower-cased, ``_`` read as ``-``. Raises ValueError for
    an empty pattern (it would match every header) and TypeError for one that is not a string."""
    found: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError("a header-name pattern must be a string")
        normal = _normal(pattern.strip())
        if not normal:
            raise ValueError("a header-name pattern must not be empty")
        if normal not in found:
            found.append(normal)
    return tuple(found)


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


@functools.lru_cache(maxsize=1024)
def is_credential_header(name: str, extra: tuple[str, ...] = ()) -> bool:
    """True if ``name`` holds a credential pattern (the defaults, and ``extra``, normalised by
    ``normalise_patterns``) anywhere: such a header is never stored, queued or shown."""
    normal = _normal(name)
    return any(p in normal for p in CREDENTIAL_PATTERNS) or any(p in normal for p in extra)


class Headers:
    """Read-only, case-insensitive multi-map of header name -> values, in arrival order.

    Stored as two dicts keyed by the lower-cased name: ``_items``, each header's first value,
    and ``_more``, every value of the headers sent more than once (None when none was). Built
    once per request, so the common case (a dict or a list of pairs, no name repeated) is one
    loop.
    """

    __slots__ = ("_items", "_more")

    def __init__(self, raw: HeadersLike = ()) -> None:
        self._more: dict[str, list[str]] | None
        self._items: dict[str, str]
        if type(raw) is dict or type(raw) is list:  # what adapters and most callers pass
            # When no name is repeated (ignoring case), which the lengths show, the lower-cased
            # names map to the values as they are: no list of values to keep. A loop, not a
            # comprehension: in Python 3.11 that is a function call of its own.
            lowered: dict[str, str] = {}
            for name, value in raw.items() if type(raw) is dict else raw:
                lowered[name.lower()] = value
            if len(lowered) == len(raw):
                self._items, self._more = lowered, None
                return
        elif isinstance(raw, Headers):
            self._items = dict(raw._items)
            self._more = None if raw._more is None else {k: list(v) for k, v in raw._more.items()}
            return
        pairs = raw.items() if isinstance(raw, Mapping) else raw
        items: dict[str, str] = {}
        more: dict[str, list[str]] = {}
        for name, value in pairs:
            lower = name.lower()
            if lower not in items:
                items[lower] = value
            elif lower in more:
                more[lower].append(value)
            else:
                more[lower] = [items[lower], value]
        self._items, self._more = items, (more or None)

    @classmethod
    def of(cls, raw: HeadersLike) -> Headers:
        """``raw`` itself when it is a ``Headers`` already (read-only, so it can be shared),
        else ``Headers(raw)``: a request's headers are parsed once, however many steps read
        them."""
        return raw if type(raw) is cls else cls(raw)

    def get(self, name: str) -> str | None:
        """The header's value, or None. Several different values for one header are refused:
        guessing which copy a proxy appended would let an attacker choose."""
        lower = name.lower()
        value = self._items.get(lower)
        if self._more is not None:
            values = self._more.get(lower)
            if values is not None and any(v != values[0] for v in values[1:]):
                raise MalformedSignature(
                    f"header {name!r} was sent {len(values)} times with different values"
                )
        return value

    def get_all(self, name: str) -> list[str]:
        """Every value the header was sent with, in arrival order."""
        lower = name.lower()
        if self._more is not None and lower in self._more:
            return list(self._more[lower])
        return [self._items[lower]] if lower in self._items else []

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[tuple[str, str]]:
        more = self._more
        for name, value in self._items.items():
            if more is not None and name in more:
                for each in more[name]:
                    yield name, each
            else:
                yield name, value

    def safe_items(
        self, redact: tuple[str, ...] = (), *, drop: Iterable[str] = ()
    ) -> list[tuple[str, str]]:
        """All headers except credentials: what may be stored, queued and shown.

        ``redact``: more name patterns (normalised, as ``normalise_patterns`` returns them);
        ``drop``: exact names to leave out too (a scheme's signature headers).
        """
        dropped = {name.lower() for name in drop}
        return [
            (k, v)
            for k, v in self
            if k not in dropped and not is_credential_header(k, redact)
        ]

    def __repr__(self) -> str:
        return f"Headers({self.safe_items()!r})"


def wsgi_headers(environ: Mapping[str, object]) -> list[tuple[str, str]]:
    """A WSGI environ's request headers as ``(Name, value)`` pairs, named and ordered as
    Werkzeug's ``request.headers`` gives them (``HTTP_X_HUB_SIGNATURE`` is
    ``X-Hub-Signature``; ``Content-Type`` and ``Content-Length`` when set), read straight from
    the environ: a fifth of the time of ``list(request.headers.items())``."""
    headers: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key[:5] == "HTTP_":
            if key != "HTTP_CONTENT_TYPE" and key != "HTTP_CONTENT_LENGTH":  # as Werkzeug
                headers.append((_title_name(key), str(value)))
        elif (key == "CONTENT_TYPE" or key == "CONTENT_LENGTH") and value:
            headers.append((_title_name(key), str(value)))
    return headers


@functools.lru_cache(maxsize=512)
def _title_name(key: str) -> str:
    """``HTTP_X_HUB_SIGNATURE`` -> ``X-Hub-Signature`` (``CONTENT_TYPE`` -> ``Content-Type``);
    cached: a server sees the same few dozen names again and again."""
    return (key[5:] if key.startswith("HTTP_") else key).replace("_", "-").title()
