"""The unit of work: one accepted delivery, exactly as it arrived."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any


def decode_headers(text: str) -> tuple[tuple[str, str], ...]:
    """Stored headers (a JSON list of ``[name, value]`` pairs, as the stores write them) back
    as the ``Delivery.headers`` tuple."""
    return tuple((str(k), str(v)) for k, v in json.loads(text))


def claimed_delivery(row: Any) -> Delivery:
    """The Delivery of a claim query's row: id, endpoint, scheme, event type, dedupe key,
    received at, headers (JSON), body, attempt, in that order (the SQLite and PostgreSQL
    queues select these columns)."""
    return Delivery(
        id=row[0],
        endpoint=row[1],
        scheme=row[2],
        event_type=row[3],
        dedupe_key=row[4],
        received_at=row[5],
        headers=decode_headers(row[6]),
        body=bytes(row[7]),
        attempt=row[8],
    )


def new_delivery_id() -> str:
    """Our own id for an accepted request: unique, URL-safe, no secret in it. The same
    format as ``uuid.uuid4().hex`` (a random version-4 UUID), from a buffer of the OS's
    randomness: one ``os.urandom`` call per 256 ids instead of one per request. The call
    releases the GIL, which on one core hands it to the store's writer thread in the middle
    of every request (and costs a system call each time)."""
    return _ids.next_hex()


class _RandomIds:
    """Version-4 UUIDs as hex, 256 at a time from ``os.urandom``; safe across threads, and
    a forked child starts a buffer of its own (it must never repeat its parent's ids)."""

    _BATCH = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def next_hex(self) -> str:
        with self._lock:
            if self._at >= len(self._buffer):
                self._buffer, self._at = os.urandom(16 * self._BATCH), 0
            raw = bytearray(self._buffer[self._at : self._at + 16])
            self._at += 16
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4, as uuid.UUID(bytes=..., version=4) sets
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return raw.hex()

    def forget(self) -> None:
        """Drop what is left of the buffer (in a forked child, where it is the parent's)."""
        self._lock = threading.Lock()
        self._buffer, self._at = b"", 0


_ids = _RandomIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.forget)


@dataclass(frozen=True)
class Delivery:
    """One accepted delivery as a handler sees it.

    ``body`` holds the raw bytes the sender signed. ``headers`` are the request's headers less
    any credential (Authorization, Cookie, ...) and the signature. ``attempt`` is 1-based and
    set by the worker. ``dedupe_key`` comes from signed content only (``schemes``);
    ``sender_id`` is the sender's own delivery id from its id header, for display: where that
    header is unsigned it is not the dedupe key, since anyone could change it.
    """

    id: str
    endpoint: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    event_type: str | None = None
    dedupe_key: str | None = None
    received_at: float = 0.0
    scheme: str = ""
    attempt: int = 1
    sender_id: str | None = None
    _parsed: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def body_sha256(self) -> str:
        """The hex sha256 of the raw body."""
        return hashlib.sha256(self.body).hexdigest()

    def json(self) -> Any:
        """The body parsed as JSON, once, on first use."""
        if not self._parsed:
            self._parsed.append(json.loads(self.body))
        return self._parsed[0]

    def header(self, name: str) -> str | None:
        """The stored header's value (name case-insensitive), or None; credentials and the
        signature are never stored."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k == lowered), None)

    def to_envelope(self) -> dict[str, Any]:
        """A JSON-safe dict for queues that carry text (body in base64, sha256 kept)."""
        return {
            "v": 1,
            "id": self.id,
            "endpoint": self.endpoint,
            "scheme": self.scheme,
            "event_type": self.event_type,
            "dedupe_key": self.dedupe_key,
            "received_at": self.received_at,
            "headers": [list(h) for h in self.headers],
            "body_b64": base64.b64encode(self.body).decode("ascii"),
            "body_sha256": self.body_sha256,
            "attempt": self.attempt,
            "sender_id": self.sender_id,
        }

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> Delivery:
        """The Delivery an envelope carries (fields it lacks take their defaults); ValueError
        when its body does not match its sha256."""
        try:
            body = base64.b64decode(envelope["body_b64"])
        except binascii.Error:  # truncated: say what the caller needs to know, as below
            raise ValueError(
                f"delivery {envelope['id']}: body_b64 is not base64, so it cannot match its sha256"
            ) from None
        if hashlib.sha256(body).hexdigest() != envelope["body_sha256"]:
            raise ValueError(f"delivery {envelope['id']}: body does not match its sha256")
        return cls(
            id=envelope["id"],
            endpoint=envelope["endpoint"],
            body=body,
            headers=tuple((str(k), str(v)) for k, v in envelope["headers"]),
            event_type=envelope.get("event_type"),
            dedupe_key=envelope.get("dedupe_key"),
            received_at=float(envelope["received_at"]),
            scheme=envelope.get("scheme", ""),
            attempt=int(envelope.get("attempt", 1)),
            # Envelopes published before sender_id existed have none.
            sender_id=envelope.get("sender_id"),
        )
