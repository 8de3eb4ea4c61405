"""Headers' storage (first values, plus every value of repeated names): reads as it always did.

The map is built once per request; its fast path (a plain dict, no name repeated) must give
the same get / get_all / in / iteration as the general one, and the general one the same as
the old list-per-name map.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from webhook_guard.core.headers import Headers
from webhook_guard.exceptions import MalformedSignature


class _PairsMapping(Mapping[str, str]):
    """A Mapping whose items() may repeat a name, as some frameworks' header objects do."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def __getitem__(self, key: str) -> str:
        for k, v in self._pairs:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def items(self):
        return list(self._pairs)


def _old_headers(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """What the map held before: every value per lower-cased name, in arrival order."""
    items: dict[str, list[str]] = {}
    for name, value in pairs:
        items.setdefault(name.lower(), []).append(value)
    return items


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [("A", "1")],
        [("A", "1"), ("b", "2"), ("C", "")],
        [("X-Id", "7"), ("x-id", "7")],
        [("X-Id", "7"), ("B", "2"), ("x-ID", "8"), ("x-id", "9")],
        [("A", "1"), ("a", "1"), ("B", "2"), ("A", "1")],
    ],
)
def test_header_map_reads_as_before(pairs: list[tuple[str, str]]) -> None:
    """From pairs, a dict (names differing in case collide), a Mapping with repeats, a
    generator, or another Headers: get, get_all, in and iteration read as they always did."""
    old = _old_headers(pairs)
    expected_iter = [(name, v) for name, values in old.items() for v in values]
    sources: list[object] = [pairs, _PairsMapping(pairs), (p for p in pairs)]
    if len({name for name, _ in pairs}) == len(pairs):
        sources.append(dict(pairs))
    for source in sources:
        headers = Headers(source)
        for copied in (headers, Headers(headers)):
            assert list(copied) == expected_iter
            for name, values in old.items():
                for asked in (name, name.upper(), name.title()):
                    assert asked in copied
                    assert copied.get_all(asked) == values
                    if len(set(values)) == 1:
                        assert copied.get(asked) == values[0]
                    else:
                        with pytest.raises(MalformedSignature, match=f"header '{asked}' was sent"):
                            copied.get(asked)
            assert copied.get("absent") is None
            assert copied.get_all("absent") == []
            assert "absent" not in copied


def test_header_copy_is_independent() -> None:
    """A copy of a Headers with repeated names shares no list with the original."""
    original = Headers([("A", "1"), ("a", "2")])
    copied = Headers(original)
    copied.get_all("a").append("3")
    assert copied.get_all("a") == original.get_all("a") == ["1", "2"]
    assert copied._more is not original._more


def test_dict_with_names_differing_in_case_is_a_repeat() -> None:
    """{"X-Sig": a, "x-sig": b} is one header sent twice: different values are refused."""
    headers = Headers({"X-Sig": "a", "x-sig": "b"})
    assert headers.get_all("X-SIG") == ["a", "b"]
    with pytest.raises(MalformedSignature, match="sent 2 times"):
        headers.get("X-Sig")
    assert Headers({"X-Sig": "a", "x-sig": "a"}).get("x-sig") == "a"
