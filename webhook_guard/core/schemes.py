"""Signature schemes: how each sender signs a delivery, as data plus a small class.

Every scheme computes HMAC-SHA256 over ``<prefix><raw body>``, where the prefix comes from the
signed-message template (``{body}``, ``{timestamp}.{body}``, ``{id}.{timestamp}.{body}``,
``v0:{timestamp}:{body}``). The body is never decoded, re-serialized or copied: the prefix is fed
to the MAC first and the body's bytes after it. Digests are compared with
``hmac.compare_digest`` against every configured key (rotation) and every signature the header
carries.

Every malformed header value raises one of our ``Rejected`` errors; nothing else escapes
``verify`` (a hypothesis test feeds the parsers arbitrary text to prove it).

Replay limits: values of unsigned headers never override signed content. The dedupe key comes
from signed content only (a signed id header, a field of the signed body, else the body's
sha256), so a captured request cannot be replayed under a new id; the event type comes from the
signed body wherever the body has one. ``HmacScheme.describe()`` says, per scheme, what is
signed and what a captured request allows (docs/schemes.md is that table).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import string
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from webhook_guard.core.headers import Headers
from webhook_guard.core.records import DEFAULT_DEDUPE_SECONDS
from webhook_guard.core.secrets import Secret
from webhook_guard.exceptions import (
    ConfigurationError,
    MalformedSignature,
    MalformedTimestamp,
    MissingSignature,
    MissingTimestamp,
    SignatureMismatch,
    TimestampOutOfTolerance,
)

DEFAULT_TOLERANCE_SECONDS = 300.0
_DIGEST_SIZE = hashlib.sha256().digest_size
_compare_digest = hmac.compare_digest
_TEMPLATE_FIELD = re.compile(r"\{(\w*)\}")
# Unix seconds have 10 digits until 2286; more than 12 is never a real timestamp.
_TIMESTAMP_MAX_DIGITS = 12
# Secrets whose prepared HMAC a scheme keeps (a Guard has one to a few; a diagnosis that tries
# many candidate keys only churns this, never grows it).
_MAX_PREPARED_KEYS = 32
# Steps verify() writes out when a subclass keeps HmacScheme's (see HmacScheme.verify).
_PARSE_STEPS = ("_parse", "_decode_signature", "_header_timestamp", "_header_id")
_CHECK_STEPS = ("verify", "_check_timestamp", "_message_prefix", "_matching_key", "_verified")
# The signed prefix's fields, as verify() builds them: {timestamp} (Stripe, Slack),
# {id} then {timestamp} (Standard Webhooks), or anything else (_message_prefix).
_TIMESTAMP_PREFIX, _ID_TIMESTAMP_PREFIX, _OTHER_PREFIX = 1, 2, 0
_PREFIX_SHAPES = {("timestamp",): _TIMESTAMP_PREFIX, ("id", "timestamp"): _ID_TIMESTAMP_PREFIX}
# Header-name attributes whose lower-cased form a scheme keeps, as "_lower_<attribute>".
_HEADER_ATTRIBUTES = frozenset(
    ("signature_header", "timestamp_header", "id_header", "id_scope_header", "event_header")
)
# Bodies larger than this are not parsed just to find an event type or id.
_MAX_JSON_SNIFF = 1 << 20
# {"name": "value" at the very start of a body, the value free of escapes.
_FIRST_STRING_MEMBER = re.compile(rb'\A\s*\{\s*"(\w+)"\s*:\s*"([^"\\]*)"')
# A numeric timestamp in a body field's string: Unix seconds, maybe with a fraction.
_NUMERIC_TIMESTAMP = re.compile(r"-?[0-9]{1,12}(\.[0-9]+)?")
BODY_SHA256 = "sha256 of the raw body"
# Standard Webhooks' refusals, raised from both ways of reading its headers.
_NO_STANDARD_SIGNATURE = "no webhook-signature (or svix-signature) header"
_NO_STANDARD_ID = "no webhook-id (or svix-id) header: it is part of the signed message"

Encoding = Literal["hex", "base64"]
SecretFormat = Literal["utf8", "whsec_base64"]


class Verified:
    """What a successful verification learned about the delivery.

    ``delivery_key`` (for dedupe, not yet scoped by endpoint) and ``event_type`` come from
    signed content wherever the scheme has any (Stripe's ``id``, a JSON ``type``, the body's
    sha256): they are worked out on first use, so that verifying costs the MAC and nothing
    more. ``sender_id`` is the id header's value, for display only when that header is unsigned.
    """

    __slots__ = (
        "_body",
        "_event",
        "_headers",
        "_key",
        "_msg_id",
        "_scheme",
        "secret_index",
        "timestamp",
    )

    def __init__(
        self,
        scheme: HmacScheme,
        headers: Headers,
        body: bytes,
        msg_id: str | None,  # the id header's value as verify read it (None: absent)
        timestamp: int | None,
        secret_index: int,  # which configured secret matched: rotation progress, for the logs
    ) -> None:
        # The id, not the parsed _Signed: verify's fast path builds no _Signed (one object
        # fewer per request, some 0.08x the 1 KiB floor).
        self._scheme, self._headers, self._body, self._msg_id = scheme, headers, body, msg_id
        self.timestamp = timestamp
        self.secret_index = secret_index
        self._key: tuple[str | None] | None = None
        self._event: tuple[str | None] | None = None

    @property
    def sender_id(self) -> str | None:
        """The sender's own delivery id (its id header), or None: shown, never trusted."""
        return self._msg_id or None

    @property
    def delivery_key(self) -> str | None:
        """The dedupe key, from signed content only."""
        if self._key is None:
            self._key = (self._scheme._delivery_key(self._headers, self._body, self._msg_id),)
        return self._key[0]

    @property
    def event_type(self) -> str | None:
        """The event type: the signed body's field where it has one, else the event header."""
        if self._event is None:
            self._event = (self._scheme._event_type(self._headers, self._body),)
        return self._event[0]


class _Signed:
    """The parts of a request's headers that a scheme signs or checks.

    A plain slotted class, not a dataclass: one is built per request, and a frozen dataclass's
    ``__init__`` costs several times as much.
    """

    __slots__ = ("msg_id", "signatures", "timestamp")

    def __init__(self, signatures: list[bytes], timestamp: str | None, msg_id: str | None) -> None:
        self.signatures = signatures
        self.timestamp = timestamp
        self.msg_id = msg_id

    def __repr__(self) -> str:
        return f"_Signed({len(self.signatures)} signature(s), {self.timestamp!r}, {self.msg_id!r})"


# HMAC (RFC 2104) pads the key to the hash's block size and XORs it with these bytes.
_BLOCK_SIZE = hashlib.sha256().block_size
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class _KeyedSha256:
    """HMAC-SHA256 keyed once: the SHA-256 states after the inner and the outer padded key.

    ``mac(prefix, body)`` is ``hmac.new(key, prefix + body, sha256).digest()``: it copies the
    two states and feeds them the message and the inner digest, as the standard library's own
    pure-Python HMAC does. Keying (two SHA-256 blocks, and ``hmac.new``'s Python calls) is paid
    once per secret; a ``copy()`` of a SHA-256 state is one C call, several times cheaper than
    copying an ``hmac.HMAC`` (whose ``digest()`` copies OpenSSL's HMAC context once more).

    The two states are never updated themselves, only copied: concurrent requests (threads) and
    consecutive ones cannot see each other's bytes. The repr shows no key material.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        key = bytes(key)
        if len(key) > _BLOCK_SIZE:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK_SIZE, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def mac(self, prefix: bytes, body: bytes) -> bytes:
        """The HMAC-SHA256 digest of ``prefix + body`` (the body is not copied)."""
        inner = self._inner.copy()
        if prefix:
            inner.update(prefix)
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def __repr__(self) -> str:
        return "<HMAC-SHA256 keyed with a secret>"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a keyed HMAC state is not pickled; key one from the secret instead")


class _KeyedMacs:
    """A scheme's ``_KeyedSha256`` per secret, keyed on first use and then only copied.

    Looked up by the key's bytes, so a rotation (new keys passed to ``verify``) finds each new
    key's state, or keys one. At most ``_MAX_PREPARED_KEYS`` are kept: past that the cache
    starts afresh (a diagnosis trying many candidate keys churns it, never grows it). Holds key
    material: its ``repr`` shows only how many secrets it holds, and a pickle or copy of it is
    empty (SHA-256 states do not pickle; they are keyed again on use).
    """

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[bytes, _KeyedSha256] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return f"<keyed HMAC-SHA256 states for {len(self._by_key)} secret(s)>"

    def __reduce__(self) -> tuple[type[_KeyedMacs], tuple[()]]:
        return (_KeyedMacs, ())

    def get(self, key: bytes) -> _KeyedSha256:
        """The keyed state for ``key``, keyed now if it is not cached yet."""
        try:
            keyed = self._by_key.get(key)
        except TypeError:  # an unhashable bytes-like key (bytearray): keyed every time
            return _KeyedSha256(key)
        if keyed is None:
            keyed = _KeyedSha256(key)
            if len(self._by_key) >= _MAX_PREPARED_KEYS:
                self._by_key.clear()
            # Two threads may both key the same secret: equal states, the last one stays.
            self._by_key[bytes(key)] = keyed
        return keyed


@dataclass(frozen=True)
class SchemeDescription:
    """What a scheme signs and what follows from it, in words: what the docs' table and the
    CLI show (``HmacScheme.describe()``), so that neither re-derives it.

    Attributes:
        name: the scheme's name.
        signature_headers: the headers that carry the signature (never stored).
        signed: the parts the MAC covers, in order (``"webhook-id header"``, ``"raw body"``).
        timestamp: where the signed timestamp is, or None when nothing signed dates the request.
        tolerance: seconds that timestamp may be from now, either way.
        dedupe_key: what the dedupe key is (always signed content).
        event_type: where the event type comes from.
        sender_id: the header shown as the sender's delivery id, if any.
        replay: what a captured request allows, and for how long.
    """

    name: str
    signature_headers: tuple[str, ...]
    signed: tuple[str, ...]
    timestamp: str | None
    tolerance: float
    dedupe_key: str
    event_type: str
    sender_id: str | None
    replay: str


class HmacScheme:
    """A custom HMAC-SHA256 scheme, built from data. The presets are instances or subclasses.

    Args:
        name: shown in logs, the history and the CLI.
        signature_header: the header that carries the signature.
        prefix: text before the encoded digest in that header (``"sha256="``, ``"v0="``, ``""``).
        encoding: ``"hex"`` or ``"base64"`` for the digest.
        template: the signed message; must end with ``{body}`` and may use ``{timestamp}`` and
            ``{id}``.
        timestamp_header: header with the Unix timestamp the template signs, if any.
        tolerance: seconds a timestamp may differ from now, in either direction.
        id_header: header with the sender's delivery id, if any. It is the dedupe key only when
            the template signs it (``{id}``); unsigned, it is kept for display
            (``Delivery.sender_id``) and the body's sha256 is the key, so a captured request
            cannot be replayed under a new id.
        id_scope_header: header that scoped GitHub's id (its hook id); unsigned, so it plays no
            part in the dedupe key. Kept for compatibility.
        event_header: header with the event type, if any; used only when the body has none of
            ``event_fields`` (an unsigned header never overrides signed content).
        event_fields: JSON body fields tried, in order, for the event type.
        id_fields: JSON body fields tried for the dedupe key when no signed id header has it.
        body_hash_id: fall back to the body's sha256 as the dedupe key (a sender's retry resends
            the same bytes); always so when ``id_header`` is unsigned.
        secret_format: ``"utf8"``, or ``"whsec_base64"``: the key is the base64 after ``whsec_``.
        body_timestamp_field: a JSON body field holding the time the sender signed (Unix
            seconds as a number or numeric string, or ISO-8601 with a UTC offset). When set, it
            must be within ``tolerance`` of now, either way: a freshness check for schemes that
            sign no timestamp header, so a captured request cannot be replayed once the dedupe
            window has passed. Off by default.
    """

    # Set with the attribute they lower-case (__setattr__).
    _lower_signature_header: str
    _lower_timestamp_header: str | None
    _lower_id_header: str | None
    _lower_id_scope_header: str | None
    _lower_event_header: str | None

    def __init__(
        self,
        name: str = "custom",
        *,
        signature_header: str,
        prefix: str = "",
        encoding: Encoding = "hex",
        template: str = "{body}",
        timestamp_header: str | None = None,
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        id_header: str | None = None,
        id_scope_header: str | None = None,
        event_header: str | None = None,
        event_fields: Sequence[str] = (),
        id_fields: Sequence[str] = (),
        body_hash_id: bool = False,
        secret_format: SecretFormat = "utf8",
        body_timestamp_field: str | None = None,
    ) -> None:
        fields = _TEMPLATE_FIELD.findall(template)
        if not template.endswith("{body}") or fields.count("body") != 1:
            raise ConfigurationError(
                f"scheme {name!r}: template {template!r} must end with {{body}} and contain it once"
            )
        unknown = set(fields) - {"body", "timestamp", "id"}
        if unknown:
            raise ConfigurationError(f"scheme {name!r}: unknown template fields {sorted(unknown)}")
        if not _formats_cleanly(template):
            raise ConfigurationError(
                f"scheme {name!r}: template {template!r} may hold only plain {{body}}, "
                "{timestamp} and {id} fields, and no other braces"
            )
        if "timestamp" in fields and not timestamp_header and not self._timestamp_in_signature():
            raise ConfigurationError(
                f"scheme {name!r}: template signs {{timestamp}}: set timestamp_header"
            )
        if "id" in fields and not id_header:
            raise ConfigurationError(f"scheme {name!r}: template signs {{id}}: set id_header")
        if encoding not in ("hex", "base64"):
            raise ConfigurationError(f"scheme {name!r}: encoding must be 'hex' or 'base64'")
        if tolerance <= 0:
            raise ConfigurationError(f"scheme {name!r}: tolerance must be positive seconds")
        if body_timestamp_field is not None and (
            not isinstance(body_timestamp_field, str) or not body_timestamp_field.strip()
        ):
            raise ConfigurationError(
                f"scheme {name!r}: body_timestamp_field must be a JSON field name"
            )
        self.name = name
        self.signature_header = signature_header
        self.prefix = prefix
        self.encoding: Encoding = encoding
        self.template = template
        self.timestamp_header = timestamp_header
        self.tolerance = float(tolerance)
        self.id_header = id_header
        self.id_scope_header = id_scope_header
        self.event_header = event_header
        self.event_fields = tuple(event_fields)
        self.id_fields = tuple(id_fields)
        self.body_hash_id = body_hash_id
        self.secret_format: SecretFormat = secret_format
        self.body_timestamp_field = body_timestamp_field
        self._signs_timestamp = "timestamp" in fields
        self._signs_id = "id" in fields
        self._prefix_template = template[: -len("{body}")]
        # The prefix template as a %-format and its fields in order: one % per request instead
        # of str.format's parsing of the template (same text: _formats_cleanly above admits
        # plain fields only).
        self._prefix_format, self._prefix_fields = _percent_format(self._prefix_template)
        self._prefix_bytes_format = self._prefix_format.encode("utf-8", "surrogatepass")
        self._prefix_shape = _PREFIX_SHAPES.get(self._prefix_fields, _OTHER_PREFIX)
        self._macs = _KeyedMacs()
        # verify() writes its steps out in one function; a subclass that overrides a step (its
        # own header parsing, say) has that step's method called instead.
        cls = type(self)
        self._own_parse = any(getattr(cls, n) is not getattr(HmacScheme, n) for n in _PARSE_STEPS)
        # Stripe and Standard Webhooks parse their own headers: verify has their _read_items
        # read the request's lower-cased dict (no Headers.get per name) unless a subclass
        # changed a parse step of the class that wrote it.
        reader = next((c for c in cls.__mro__ if "_read_items" in vars(c)), HmacScheme)
        self._reads_items = reader is not HmacScheme and all(
            getattr(cls, n) is getattr(reader, n) for n in _PARSE_STEPS
        )
        self._own_steps = any(getattr(cls, n) is not getattr(HmacScheme, n) for n in _CHECK_STEPS)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in _HEADER_ATTRIBUTES:
            # verify() reads the request's headers by these, lower-cased once, not per request.
            lower = value.lower() if isinstance(value, str) else None
            object.__setattr__(self, "_lower_" + name, lower)

    # -- what it signs -----------------------------------------------------------------------

    @property
    def signature_headers(self) -> tuple[str, ...]:
        """Every header that may carry this scheme's signature: never stored, queued or shown
        (whoever reads a stored signature could replay the request)."""
        return (self.signature_header,)

    @property
    def signed_parts(self) -> tuple[str, ...]:
        """The parts of a request the MAC covers, in the template's order, in words."""
        parts: list[str] = []
        for field in _TEMPLATE_FIELD.findall(self.template):
            if field == "body":
                parts.append("raw body")
            elif field == "id":
                parts.append(f"{self.id_header} header")
            else:
                parts.append(self._timestamp_source())
        return tuple(parts)

    def _timestamp_source(self) -> str:
        return f"{self.timestamp_header} header"

    def describe(self) -> SchemeDescription:
        """What this scheme signs, its dedupe key, where the event type comes from, and what a
        captured request allows: one ``SchemeDescription``, the source of docs/schemes.md."""
        return SchemeDescription(
            name=self.name,
            signature_headers=self.signature_headers,
            signed=self.signed_parts,
            timestamp=self._describe_timestamp(),
            tolerance=self.tolerance,
            dedupe_key=self._describe_key(),
            event_type=self._describe_event(),
            sender_id=self.id_header,
            replay=self._describe_replay(),
        )

    def _describe_timestamp(self) -> str | None:
        found: list[str] = []
        if self._signs_timestamp:
            found.append(self._timestamp_source())
        if self.body_timestamp_field:
            found.append(f"body field {self.body_timestamp_field!r}")
        return " and ".join(found) or None

    def _describe_key(self) -> str:
        if self._signs_id:
            return f"{self.id_header} (signed)"
        found: list[str] = [f"body field {f!r}" for f in self.id_fields]
        if self.body_hash_id or self.id_header:
            found.append(BODY_SHA256)
        if not found:
            return "none: every request is a new delivery"
        key = ", else ".join(found)
        if self.id_header:
            key += f" ({self.id_header} is unsigned: shown, not the key)"
        return key

    def _describe_event(self) -> str:
        found = [f"body field {f!r}" for f in self.event_fields]
        if self.event_header:
            found.append(f"{self.event_header} header (unsigned)")
        return ", else ".join(found) or "none"

    def _describe_replay(self) -> str:
        tolerance = f"{self.tolerance:g} s"
        days = f"{DEFAULT_DEDUPE_SECONDS / 86400:g} days by default"
        if self._signs_timestamp or self.body_timestamp_field:
            if self._describe_key().startswith("none"):
                return f"runs again while within {tolerance} of its signed time; refused after"
            return (
                f"a duplicate (not run again) within {tolerance} of its signed time; "
                "refused (401) after"
            )
        if self._describe_key().startswith("none"):
            return "runs again, forever (nothing signed dates it or identifies it)"
        return (
            f"a duplicate (not run again) within the dedupe window ({days}); after it, runs "
            "again, forever, unless body_timestamp_field is set"
        )

    # -- keys ------------------------------------------------------------------------------

    def key_for(self, secret: str | Secret) -> bytes:
        """The HMAC key a secret stands for. Raises ConfigurationError, never echoing it."""
        if isinstance(secret, Secret):
            secret = secret.reveal()
        if not isinstance(secret, str) or not secret:
            raise ConfigurationError(f"scheme {self.name!r}: a secret must be a non-empty string")
        if self.secret_format == "utf8":
            return secret.encode("utf-8")
        encoded = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"scheme {self.name!r}: the secret is not valid base64 after 'whsec_' "
                "(copy it exactly as the sender's dashboard shows it)"
            ) from None
        if not key:
            raise ConfigurationError(f"scheme {self.name!r}: the secret decodes to an empty key")
        return key

    # -- verification ----------------------------------------------------------------------

    def verify(self, headers: Headers, body: bytes, keys: Sequence[bytes], now: float) -> Verified:
        """Check the request's signature over the raw ``body``; raise a ``Rejected`` if it fails."""
        if self._own_steps:
            return self._verify_by_steps(headers, body, keys, now)
        # The steps of _verify_by_steps written out: _parse (unless a subclass has its own),
        # _check_timestamp, _message_prefix, _matching_key. At 1 KiB each Python call costs
        # as much as some 100 bytes of SHA-256; tests/core/test_verify_fast_path.py holds the
        # two ways to the same results and the same rejections.
        # A Headers with no repeated name is read straight from its dict, by the lower-cased
        # names kept on the scheme (Headers.get would lower-case them per lookup).
        items = headers._items if type(headers) is Headers and headers._more is None else None
        # The parsed parts stay in locals: a _Signed is built only for the methods that take
        # one (a subclass's _parse, _message_prefix's other shapes, _verified).
        signed: _Signed | None = None
        if self._own_parse:
            if items is not None and self._reads_items:
                signatures, stamp, msg_id = self._read_items(items)
            else:
                signed = self._parse(headers)
                signatures, stamp, msg_id = signed.signatures, signed.timestamp, signed.msg_id
        else:
            name = self.signature_header
            if items is not None:
                raw = items.get(self._lower_signature_header)
            else:
                raw = headers.get(name)
            if raw is not None:
                raw = raw.strip()
            if not raw:
                raise MissingSignature(f"no {name} header")
            prefix = self.prefix
            if prefix:
                if not raw.startswith(prefix):
                    raise MalformedSignature(f"{name} must start with {prefix!r}")
                raw = raw[len(prefix) :]
            try:
                signature = bytes.fromhex(raw) if self.encoding == "hex" else _b64decode(raw)
            except (ValueError, binascii.Error):
                raise MalformedSignature(f"{name} is not {self.encoding}") from None
            if len(signature) != _DIGEST_SIZE:
                raise MalformedSignature(
                    f"{name} holds {len(signature)} bytes, not a SHA-256 digest"
                )
            signatures = [signature]
            stamp = msg_id = None
            if self.timestamp_header:
                lower = self._lower_timestamp_header
                if items is not None and lower is not None:
                    stamp = items.get(lower)
                else:
                    stamp = headers.get(self.timestamp_header)
            if self.id_header:
                lower = self._lower_id_header
                if items is not None and lower is not None:
                    msg_id = items.get(lower)
                else:
                    msg_id = headers.get(self.id_header)
        timestamp: int | None = None
        mac_prefix = b""
        if self._signs_timestamp:
            # _check_timestamp's checks, for a good timestamp; it raises for any other. As
            # bytes: the prefix needs them, and bytes.isdigit() is true for ASCII digits only
            # (str.isdigit() takes other scripts' too), so one call fewer than isascii() and
            # isdigit() on the str.
            try:
                digits = stamp.strip().encode("ascii") if stamp else b""
            except UnicodeEncodeError:
                digits = b""
            if digits.isdigit() and len(digits) <= _TIMESTAMP_MAX_DIGITS:
                timestamp = int(digits)
                if not abs(now - timestamp) <= self.tolerance:
                    timestamp = self._check_timestamp(stamp, now)
            else:
                timestamp = self._check_timestamp(stamp, now)
            # The timestamp is ASCII digits here: its UTF-8 is its ASCII. UTF-8 encodes code
            # point by code point: encoding the parts is encoding the whole.
            if self._prefix_shape == _TIMESTAMP_PREFIX:  # Stripe's, Slack's
                mac_prefix = self._prefix_bytes_format % digits
            elif self._prefix_shape == _ID_TIMESTAMP_PREFIX:  # Standard Webhooks'
                id_bytes = (msg_id or "").encode("utf-8", "surrogatepass")
                mac_prefix = self._prefix_bytes_format % (id_bytes, digits)
            else:
                signed = signed or _Signed(signatures, stamp, msg_id)
                mac_prefix = self._message_prefix(signed)
        elif self._prefix_template:
            signed = signed or _Signed(signatures, stamp, msg_id)
            mac_prefix = self._message_prefix(signed)
        matched: int | None = None
        cached = self._macs._by_key
        index = -1  # counted by hand: enumerate() costs some 0.04x the 1 KiB floor per call
        for key in keys:
            index += 1
            try:
                keyed = cached[key]
            except (KeyError, TypeError):
                keyed = self._macs.get(key)
            inner = keyed._inner.copy()  # the cached states are only ever copied
            if mac_prefix:
                inner.update(mac_prefix)
            inner.update(body)
            outer = keyed._outer.copy()
            outer.update(inner.digest())
            expected = outer.digest()
            for candidate in signatures:
                # No early exit: the time taken must not tell which secret or signature matched.
                if _compare_digest(expected, candidate) and matched is None:
                    matched = index
        if matched is None or self.body_timestamp_field or items is None:
            signed = signed or _Signed(signatures, stamp, msg_id)
            return self._verified(headers, body, keys, now, signed, timestamp, matched)
        # _verified's lookups, from the dict (no name is repeated: none can be refused).
        return Verified(self, headers, body, msg_id, timestamp, matched)

    def _verify_by_steps(
        self, headers: Headers, body: bytes, keys: Sequence[bytes], now: float
    ) -> Verified:
        """``verify`` one step per method: the way for a subclass that overrides a step."""
        signed = self._parse(headers)
        timestamp = self._check_timestamp(signed.timestamp, now) if self._signs_timestamp else None
        mac_prefix = self._message_prefix(signed)
        matched = self._matching_key(keys, mac_prefix, body, signed.signatures)
        return self._verified(headers, body, keys, now, signed, timestamp, matched)

    def _verified(
        self,
        headers: Headers,
        body: bytes,
        keys: Sequence[bytes],
        now: float,
        signed: _Signed,
        timestamp: int | None,
        matched: int | None,
    ) -> Verified:
        """What follows the MAC: refuse a mismatch, check the body's timestamp if configured,
        look up the headers that must not be repeated; the ``Verified``."""
        if matched is None:
            raise SignatureMismatch(
                f"{self.signature_header} matches the raw body under none of the "
                f"{len(keys)} configured secret(s); the sender must sign the exact bytes it sends, "
                "with the same secret"
            )
        # Only a verified body is parsed for its timestamp: the MAC comes first.
        if self.body_timestamp_field:
            self._check_body_timestamp(body, now)
        # Header lookups are cheap and refuse a header repeated with different values: do them
        # now. What comes from the body is worked out only when asked for.
        if self.id_scope_header:
            headers.get(self.id_scope_header)
        if self.event_header:
            headers.get(self.event_header)
        return Verified(self, headers, body, signed.msg_id, timestamp, matched)

    def _parse(self, headers: Headers) -> _Signed:
        raw = headers.get(self.signature_header)
        if raw is not None:
            raw = raw.strip()
        if not raw:
            raise MissingSignature(f"no {self.signature_header} header")
        return _Signed(
            [self._decode_signature(raw)],
            self._header_timestamp(headers),
            self._header_id(headers),
        )

    def _read_items(self, items: dict[str, str]) -> tuple[list[bytes], str | None, str | None]:
        """``_parse`` on the request's headers as a dict keyed by lower-cased name, no name
        repeated: the signatures, the timestamp and the id. Written by a subclass whose own
        ``_parse`` it mirrors (Stripe, Standard Webhooks); the base verify reads the dict
        itself."""
        raise NotImplementedError

    def _header_timestamp(self, headers: Headers) -> str | None:
        return headers.get(self.timestamp_header) if self.timestamp_header else None

    def _header_id(self, headers: Headers) -> str | None:
        return headers.get(self.id_header) if self.id_header else None

    def _decode_signature(self, value: str, prefix: str | None = None) -> bytes:
        if prefix is None:
            prefix = self.prefix
        if prefix:
            if not value.startswith(prefix):
                raise MalformedSignature(f"{self.signature_header} must start with {prefix!r}")
            value = value[len(prefix) :]
        try:
            digest = bytes.fromhex(value) if self.encoding == "hex" else _b64decode(value)
        except (ValueError, binascii.Error):
            raise MalformedSignature(f"{self.signature_header} is not {self.encoding}") from None
        if len(digest) != _DIGEST_SIZE:
            raise MalformedSignature(
                f"{self.signature_header} holds {len(digest)} bytes, not a SHA-256 digest"
            )
        return digest

    def _check_timestamp(self, raw: str | None, now: float) -> int:
        if raw is not None:
            raw = raw.strip()
        if not raw:
            where = self.timestamp_header or self.signature_header
            raise MissingTimestamp(f"no timestamp in {where}")
        # 1 to 12 ASCII digits, without a regex: isdigit() alone would take other scripts' digits.
        if not (raw.isascii() and raw.isdigit() and len(raw) <= _TIMESTAMP_MAX_DIGITS):
            where = self.timestamp_header or self.signature_header
            raise MalformedTimestamp(f"{where} is not Unix seconds")
        timestamp = int(raw)
        skew = now - timestamp
        if abs(skew) > self.tolerance:
            where = self.timestamp_header or self.signature_header
            direction = "in the past" if skew > 0 else "in the future"
            raise TimestampOutOfTolerance(
                f"{where} is {abs(skew):.0f}s {direction}; tolerance is {self.tolerance:.0f}s "
                "(check the sender's and this host's clocks, or a replayed request)"
            )
        return timestamp

    def _check_body_timestamp(self, body: bytes, now: float) -> float:
        field = self.body_timestamp_field
        where = f"the body's {field!r} field"
        try:
            parsed: Any = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        value = parsed.get(field) if isinstance(parsed, dict) else None
        if value is None or value == "":
            raise MissingTimestamp(
                f"no {where} (body_timestamp_field={field!r} needs a JSON object body with it)"
            )
        timestamp = _body_timestamp(value)
        if timestamp is None:
            raise MalformedTimestamp(
                f"{where} is neither Unix seconds nor an ISO-8601 time with a UTC offset"
            )
        skew = now - timestamp
        if abs(skew) > self.tolerance:
            direction = "in the past" if skew > 0 else "in the future"
            raise TimestampOutOfTolerance(
                f"{where} is {abs(skew):.0f}s {direction}; tolerance is {self.tolerance:.0f}s "
                "(check the sender's and this host's clocks, or a replayed request)"
            )
        return timestamp

    def _message_prefix(self, signed: _Signed) -> bytes:
        if not self._prefix_template:
            return b""
        timestamp = signed.timestamp.strip() if signed.timestamp else ""
        msg_id = signed.msg_id or ""
        fields = self._prefix_fields
        if len(fields) == 1:  # Stripe's and Slack's {timestamp}
            values: tuple[str, ...] = (timestamp if fields[0] == "timestamp" else msg_id,)
        else:
            values = tuple([timestamp if field == "timestamp" else msg_id for field in fields])
        # A lone surrogate in a header must not raise.
        return (self._prefix_format % values).encode("utf-8", "surrogatepass")

    def _matching_key(
        self, keys: Sequence[bytes], prefix: bytes, body: bytes, signatures: Sequence[bytes]
    ) -> int | None:
        found: int | None = None
        keyed = self._macs.get
        for index, key in enumerate(keys):
            expected = keyed(key).mac(prefix, body)
            for signature in signatures:
                # No early exit: the time taken must not tell which secret or signature matched.
                if hmac.compare_digest(expected, signature) and found is None:
                    found = index
        return found

    def _delivery_key(self, headers: Headers, body: bytes, msg_id: str | None) -> str | None:
        # Signed content only: an unsigned id header (or its scope) would let a captured
        # request be replayed as new under any id its sender chose.
        key = msg_id if self._signs_id else None
        if not key and self.id_fields:
            key = _json_field(body, self.id_fields)
        if not key and (self.body_hash_id or self.id_header):
            key = "sha256:" + hashlib.sha256(body).hexdigest()
        return key or None

    def _event_type(self, headers: Headers, body: bytes) -> str | None:
        # The signed body first: a forged event header must not re-route a signed body.
        event = _json_field(body, self.event_fields) if self.event_fields else None
        if not event and self.event_header:
            event = headers.get(self.event_header) or None
        return event

    # -- signing (tests, the CLI's send) -----------------------------------------------------

    def sign(
        self,
        body: bytes,
        secret: str,
        *,
        timestamp: int | None = None,
        msg_id: str | None = None,
        event: str | None = None,
    ) -> dict[str, str]:
        """Headers a correct sender would attach to ``body``."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers: dict[str, str] = {"Content-Type": "application/json"}
        if self.id_header:
            msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
            headers[self.id_header] = msg_id
        if self.timestamp_header:
            headers[self.timestamp_header] = str(timestamp)
        if event and self.event_header:
            headers[self.event_header] = event
        prefix = self._message_prefix(_Signed([], str(timestamp), msg_id))
        digest = hmac.new(self.key_for(secret), prefix + body, hashlib.sha256).digest()
        headers[self.signature_header] = self._format_signature(digest, timestamp)
        return headers

    def _format_signature(self, digest: bytes, timestamp: int) -> str:
        return self.prefix + _encode(digest, self.encoding)

    @staticmethod
    def _timestamp_in_signature() -> bool:
        """True for schemes (Stripe) that carry the timestamp inside the signature header."""
        return False


class StandardWebhooksScheme(HmacScheme):
    """Standard Webhooks (and Svix): ``webhook-signature: v1,<b64> v1,<b64>`` over ``id.ts.body``.

    Accepts the ``svix-*`` header names too. Entries of other versions (``v1a`` is asymmetric)
    are ignored; at least one ``v1`` entry must be there.
    """

    def __init__(
        self,
        *,
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        body_timestamp_field: str | None = None,
    ) -> None:
        super().__init__(
            "standard",
            signature_header="webhook-signature",
            prefix="v1,",
            encoding="base64",
            template="{id}.{timestamp}.{body}",
            timestamp_header="webhook-timestamp",
            tolerance=tolerance,
            id_header="webhook-id",
            event_fields=("type",),
            secret_format="whsec_base64",
            body_timestamp_field=body_timestamp_field,
        )

    @property
    def signature_headers(self) -> tuple[str, ...]:
        """``webhook-signature`` and its Svix name, ``svix-signature``."""
        return ("webhook-signature", "svix-signature")

    @staticmethod
    def _either(headers: Headers, name: str) -> str | None:
        value = headers.get(name)
        return value if value is not None else headers.get("svix-" + name[len("webhook-") :])

    def _header_timestamp(self, headers: Headers) -> str | None:
        return self._either(headers, "webhook-timestamp")

    def _header_id(self, headers: Headers) -> str | None:
        return self._either(headers, "webhook-id")

    def _parse(self, headers: Headers) -> _Signed:
        raw = self._either(headers, "webhook-signature")
        if raw is None or not raw.strip():
            raise MissingSignature(_NO_STANDARD_SIGNATURE)
        msg_id = self._header_id(headers)
        if not msg_id:
            raise MalformedSignature(_NO_STANDARD_ID)
        return _Signed(self._v1_signatures(raw), self._header_timestamp(headers), msg_id)

    def _read_items(self, items: dict[str, str]) -> tuple[list[bytes], str | None, str | None]:
        # _parse's steps in its order, each name looked up in the dict: webhook-*, else svix-*.
        raw = items.get("webhook-signature")
        if raw is None:
            raw = items.get("svix-signature")
        if raw is None or not raw.strip():
            raise MissingSignature(_NO_STANDARD_SIGNATURE)
        msg_id = items.get("webhook-id")
        if msg_id is None:
            msg_id = items.get("svix-id")
        if not msg_id:
            raise MalformedSignature(_NO_STANDARD_ID)
        signatures = self._v1_signatures(raw)
        stamp = items.get("webhook-timestamp")
        return signatures, (stamp if stamp is not None else items.get("svix-timestamp")), msg_id

    def _v1_signatures(self, raw: str) -> list[bytes]:
        signatures = []  # a loop: a comprehension is a function call of its own in 3.11
        for entry in raw.split():
            if entry.startswith("v1,"):
                signatures.append(self._decode_signature(entry))
        if not signatures:
            raise MalformedSignature("webhook-signature holds no 'v1,<base64>' entry")
        return signatures


class StripeScheme(HmacScheme):
    """Stripe: ``Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]`` over ``ts.body``.

    The key is the whole ``whsec_...`` string as UTF-8, as stripe-python uses it. The delivery id
    and event type come from the verified body's ``id`` and ``type`` (the body's sha256 when it
    has no ``id``).
    """

    def __init__(
        self,
        *,
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        body_timestamp_field: str | None = None,
    ) -> None:
        super().__init__(
            "stripe",
            signature_header="Stripe-Signature",
            prefix="",
            encoding="hex",
            template="{timestamp}.{body}",
            tolerance=tolerance,
            id_fields=("id",),
            event_fields=("type",),
            body_hash_id=True,
            body_timestamp_field=body_timestamp_field,
        )

    @staticmethod
    def _timestamp_in_signature() -> bool:
        return True

    def _timestamp_source(self) -> str:
        return "t= in Stripe-Signature"

    def _parse(self, headers: Headers) -> _Signed:
        return _Signed(*self._signed_parts(headers.get(self.signature_header)))

    def _read_items(self, items: dict[str, str]) -> tuple[list[bytes], str | None, str | None]:
        return self._signed_parts(items.get(self._lower_signature_header))

    def _signed_parts(self, raw: str | None) -> tuple[list[bytes], str, None]:
        """The v1 signatures and the timestamp in a ``Stripe-Signature`` value."""
        if raw is None or not raw.strip():
            raise MissingSignature("no Stripe-Signature header")
        timestamp: str | None = None
        signatures: list[bytes] = []
        for item in raw.split(","):
            name, sep, value = item.strip().partition("=")
            if not sep:
                raise MalformedSignature("Stripe-Signature items must be 'key=value'")
            if name == "t":
                timestamp = value
            elif name == "v1":
                signatures.append(self._decode_signature(value))
        if timestamp is None:
            raise MissingTimestamp("no t=<timestamp> in Stripe-Signature")
        if not signatures:
            raise MalformedSignature("Stripe-Signature holds no v1=<hex> signature")
        return signatures, timestamp, None

    def _format_signature(self, digest: bytes, timestamp: int) -> str:
        return f"t={timestamp},v1={digest.hex()}"


def cloudaipilot(
    *, tolerance: float = DEFAULT_TOLERANCE_SECONDS, body_timestamp_field: str | None = None
) -> HmacScheme:
    """CloudAIPilot (the default): ``X-CloudAIPilot-Signature: sha256=<hex>`` over the raw body.

    Only the body is signed. The dedupe key is the sha256 of the raw body (a sender's retry
    resends the same bytes); ``X-CloudAIPilot-Delivery`` is unsigned, so it is kept for display
    only. The event type is the body's ``event`` (else ``type``); the unsigned
    ``X-CloudAIPilot-Event`` header only when the body has neither. Nothing signed dates a
    request: pass ``body_timestamp_field="timestamp"`` to refuse a captured request replayed
    after the tolerance.
    """
    return HmacScheme(
        "cloudaipilot",
        signature_header="X-CloudAIPilot-Signature",
        prefix="sha256=",
        encoding="hex",
        tolerance=tolerance,
        body_timestamp_field=body_timestamp_field,
        id_header="X-CloudAIPilot-Delivery",
        event_header="X-CloudAIPilot-Event",
        event_fields=("event", "type"),
        body_hash_id=True,
    )


def github(
    *, tolerance: float = DEFAULT_TOLERANCE_SECONDS, body_timestamp_field: str | None = None
) -> HmacScheme:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body.

    ``X-GitHub-Delivery`` and ``X-GitHub-Hook-ID`` are unsigned: the dedupe key is the body's
    sha256 (a redelivery resends the same bytes) and the delivery id is kept for display. The
    event type is the ``X-GitHub-Event`` header (GitHub's body does not name it)."""
    return HmacScheme(
        "github",
        signature_header="X-Hub-Signature-256",
        prefix="sha256=",
        encoding="hex",
        tolerance=tolerance,
        body_timestamp_field=body_timestamp_field,
        id_header="X-GitHub-Delivery",
        id_scope_header="X-GitHub-Hook-ID",
        event_header="X-GitHub-Event",
    )


def slack(
    *, tolerance: float = DEFAULT_TOLERANCE_SECONDS, body_timestamp_field: str | None = None
) -> HmacScheme:
    """Slack: ``X-Slack-Signature: v0=<hex>`` over ``v0:<ts>:<body>``.

    Dedupe on the Events API's ``event_id``, else on the body's sha256 (a retry resends the same
    bytes; slash-command bodies carry a unique ``trigger_id``)."""
    return HmacScheme(
        "slack",
        signature_header="X-Slack-Signature",
        prefix="v0=",
        encoding="hex",
        template="v0:{timestamp}:{body}",
        timestamp_header="X-Slack-Request-Timestamp",
        tolerance=tolerance,
        body_timestamp_field=body_timestamp_field,
        id_fields=("event_id",),
        event_fields=("type",),
        body_hash_id=True,
    )


def shopify(
    *, tolerance: float = DEFAULT_TOLERANCE_SECONDS, body_timestamp_field: str | None = None
) -> HmacScheme:
    """Shopify: ``X-Shopify-Hmac-Sha256: <base64>`` over the raw body.

    ``X-Shopify-Webhook-Id`` is unsigned: the dedupe key is the body's sha256 and the id is kept
    for display. The event type is the ``X-Shopify-Topic`` header (the body does not name it)."""
    return HmacScheme(
        "shopify",
        signature_header="X-Shopify-Hmac-Sha256",
        encoding="base64",
        tolerance=tolerance,
        body_timestamp_field=body_timestamp_field,
        id_header="X-Shopify-Webhook-Id",
        event_header="X-Shopify-Topic",
    )


PRESETS = {
    "cloudaipilot": cloudaipilot,
    "github": github,
    "stripe": StripeScheme,
    "standard": StandardWebhooksScheme,
    "slack": slack,
    "shopify": shopify,
}


def get_scheme(scheme: str | HmacScheme, *, tolerance: float | None = None) -> HmacScheme:
    """A preset by name, or the given scheme object unchanged."""
    if isinstance(scheme, HmacScheme):
        return scheme
    factory = PRESETS.get(scheme)
    if factory is None:
        raise ConfigurationError(
            f"unknown scheme {scheme!r}; choose one of {', '.join(PRESETS)} or pass an HmacScheme"
        )
    return factory(tolerance=tolerance or DEFAULT_TOLERANCE_SECONDS)


def _encode(digest: bytes, encoding: Encoding) -> str:
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode("ascii")


if sys.version_info >= (3, 11):

    def _b64decode(text: str) -> bytes:
        """``base64.b64decode(text, validate=True)``, sparing a good signature its regex.

        What the strict decoder accepts (the alphabet, then padding only at the end) the regex
        accepts too, and both decode it alike; anything else takes the original way, which
        raises as it always did."""
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except ValueError:  # binascii.Error, or a non-ASCII str
            return base64.b64decode(text, validate=True)

else:  # pragma: no cover - Python 3.10 has no strict mode

    def _b64decode(text: str) -> bytes:
        """``base64.b64decode(text, validate=True)``."""
        return base64.b64decode(text, validate=True)


def _percent_format(prefix_template: str) -> tuple[str, tuple[str, ...]]:
    """A template's prefix (what comes before ``{body}``) as a ``%`` format, and its fields in
    order: ``"{id}.{timestamp}."`` -> ``("%s.%s.", ("id", "timestamp"))``. ``fmt % values`` gives
    what ``prefix_template.format(**values)`` gives, for the plain fields ``_formats_cleanly``
    admits."""
    parts: list[str] = []
    fields: list[str] = []
    for literal, field, _, _ in string.Formatter().parse(prefix_template):
        parts.append(literal.replace("%", "%%"))
        if field is not None:
            parts.append("%s")
            fields.append(field)
    return "".join(parts), tuple(fields)


def _formats_cleanly(template: str) -> bool:
    """True if ``str.format`` sees only plain fields: a stray brace, ``!r``, ``:spec`` or
    ``[index]`` would otherwise fail or change the message on every request, not at start-up."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return False
    return all(
        field in (None, "body", "timestamp", "id") and not spec and not conversion
        for _, field, spec, conversion in parts
    )


def _body_timestamp(value: Any) -> float | None:
    """Unix seconds from a JSON value (a number, a numeric string, or ISO-8601 with a UTC
    offset), or None when it is none of those."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range
            return None
    elif isinstance(value, str) and _NUMERIC_TIMESTAMP.fullmatch(value.strip()):
        seconds = float(value.strip())
    elif isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        # Python 3.10's fromisoformat does not read a trailing "Z".
        text = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
        if when.tzinfo is None:
            return None  # a local time would depend on this host's zone
        seconds = when.timestamp()
    else:
        return None
    return seconds if math.isfinite(seconds) else None


def _json_field(body: bytes, fields: Sequence[str]) -> str | None:
    """The first string among ``fields`` of a JSON object body, or None. Never raises."""
    if len(body) > _MAX_JSON_SNIFF or body.lstrip()[:1] != b"{":
        return None
    first = _FIRST_STRING_MEMBER.match(body)
    if first is not None and first.group(1).decode() == fields[0]:
        # The body opens with the field wanted first (Stripe's "id", a Standard Webhooks
        # "type"): no need to parse the rest. Escaped values take the full parse below.
        return first.group(2).decode("utf-8", "replace") or None
    try:
        parsed: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict):
        return None
    for field in fields:
        value = parsed.get(field)
        if isinstance(value, str) and value:
            return value
    return None
