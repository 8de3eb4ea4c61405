"""webhook_guard.core.delivery: the envelope queues carry, and the handler's view of the body."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_guard.core.delivery import Delivery, new_delivery_id


def make(body: bytes = b'{"n": 1}', **fields: Any) -> Delivery:
    return Delivery(id="d-1", endpoint="default", body=body, **fields)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=4096),
    headers=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=5),
    event_type=st.none() | st.text(max_size=30),
    dedupe_key=st.none() | st.text(max_size=30),
    received_at=st.floats(min_value=0, max_value=4e9),
    attempt=st.integers(1, 100),
    sender_id=st.none() | st.text(max_size=30),
)
def test_envelope_round_trip_is_byte_exact(
    body: bytes,
    headers: list[tuple[str, str]],
    event_type: str | None,
    dedupe_key: str | None,
    received_at: float,
    attempt: int,
    sender_id: str | None,
) -> None:
    """A delivery survives to_envelope -> JSON text -> from_envelope with its bytes unchanged."""
    original = Delivery(
        id=new_delivery_id(),
        endpoint="orders",
        body=body,
        headers=tuple(headers),
        event_type=event_type,
        dedupe_key=dedupe_key,
        received_at=received_at,
        scheme="github",
        attempt=attempt,
        sender_id=sender_id,
    )
    restored = Delivery.from_envelope(json.loads(json.dumps(original.to_envelope())))
    assert restored == original
    assert restored.body == body and type(restored.body) is bytes


def test_envelope_is_json_safe_and_versioned() -> None:
    """The envelope is plain JSON with a version, the base64 body and its sha256."""
    envelope = make(b"\xff\x00raw").to_envelope()
    assert json.loads(json.dumps(envelope)) == envelope
    assert envelope["v"] == 1
    assert envelope["body_b64"] == "/wByYXc="
    assert envelope["body_sha256"] == hashlib.sha256(b"\xff\x00raw").hexdigest()


def test_corrupted_body_is_refused_naming_sha256() -> None:
    """An envelope whose body_b64 was altered raises ValueError mentioning sha256."""
    envelope = make(b"the original bytes").to_envelope()
    first = envelope["body_b64"][0]
    envelope["body_b64"] = ("B" if first != "B" else "C") + envelope["body_b64"][1:]
    with pytest.raises(ValueError, match="sha256") as caught:
        Delivery.from_envelope(envelope)
    assert "d-1" in str(caught.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_unreadable_body_is_refused_naming_sha256(damage: str) -> None:
    """A truncated or non-base64 body_b64 is a ValueError mentioning sha256, not binascii.Error."""
    envelope = make(b"the original bytes").to_envelope()
    envelope["body_b64"] = {
        "truncate": envelope["body_b64"][:-3],
        "garbage": "!!!not base64!!!",
        "empty": "",
    }[damage]
    with pytest.raises(ValueError, match="sha256"):
        Delivery.from_envelope(envelope)


def test_wrong_sha256_is_refused() -> None:
    """An envelope whose sha256 does not match its body is refused."""
    envelope = make().to_envelope()
    envelope["body_sha256"] = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ValueError, match="sha256"):
        Delivery.from_envelope(envelope)


def test_envelope_without_optional_fields_uses_defaults() -> None:
    """An envelope without scheme, attempt, event_type, dedupe_key or sender_id (published
    before sender_id existed) gets the defaults."""
    envelope = make(sender_id="dlv-1").to_envelope()
    assert envelope["sender_id"] == "dlv-1"
    for key in ("scheme", "attempt", "event_type", "dedupe_key", "sender_id"):
        del envelope[key]
    restored = Delivery.from_envelope(envelope)
    assert (restored.scheme, restored.attempt) == ("", 1)
    assert restored.event_type is None and restored.dedupe_key is None
    assert restored.sender_id is None


def test_json_is_parsed_lazily_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """json() parses nothing until called, then parses once and returns the same object."""
    calls: list[bytes] = []
    real_loads = json.loads

    def counting_loads(data: Any, **kwargs: Any) -> Any:
        calls.append(data)
        return real_loads(data, **kwargs)

    monkeypatch.setattr(json, "loads", counting_loads)  # the module delivery.py calls
    delivery = make(b'{"order": {"id": 7}}')
    assert calls == []
    first = delivery.json()
    assert first == {"order": {"id": 7}}
    assert delivery.json() is first
    assert len(calls) == 1


def test_invalid_json_fails_only_when_asked() -> None:
    """A body that is not JSON is a valid delivery; json() raises only when called."""
    delivery = make(b"token=abc&team_id=T1")
    assert delivery.body == b"token=abc&team_id=T1"
    with pytest.raises(ValueError):
        delivery.json()


def test_parsed_cache_is_not_part_of_equality() -> None:
    """Calling json() on one copy does not make it unequal to an unparsed copy."""
    parsed, fresh = make(), make()
    parsed.json()
    assert parsed == fresh


def test_header_lookup_is_case_insensitive() -> None:
    """header() finds a stored (lowercase) header by any spelling, or returns None."""
    delivery = make(headers=(("x-github-event", "push"), ("content-type", "application/json")))
    assert delivery.header("X-GitHub-Event") == "push"
    assert delivery.header("x-missing") is None


def test_body_sha256() -> None:
    """body_sha256 is the hex sha256 of the raw bytes."""
    assert make(b"abc").body_sha256 == hashlib.sha256(b"abc").hexdigest()


def test_new_delivery_ids_are_unique_and_url_safe() -> None:
    """new_delivery_id gives distinct, URL-safe ids."""
    ids = {new_delivery_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.isalnum() and i.isascii() for i in ids)


def test_delivery_ids_are_random_version_4_uuids_never_repeated_across_threads() -> None:
    """Ids come from a shared buffer of OS randomness: 8 threads x 1000 ids (several refills)
    are all distinct, and each is a valid version-4 RFC 4122 UUID in hex."""
    import threading
    import uuid

    found: list[list[str]] = [[] for _ in range(8)]

    def take(slot: int) -> None:
        found[slot].extend(new_delivery_id() for _ in range(1000))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for part in found for i in part]
    assert len(set(ids)) == 8000
    for text in ids[::97]:
        parsed = uuid.UUID(text)
        assert parsed.hex == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_never_repeats_its_parents_ids() -> None:
    """The buffer is dropped in a forked child: a child and its parent, both drawing from a
    buffer the parent had half used, produce different ids."""
    import os

    new_delivery_id()  # the parent's buffer now holds 255 unused ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then exit without pytest's cleanup
        os.close(read)
        os.write(write, " ".join(new_delivery_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_delivery_id() for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)
