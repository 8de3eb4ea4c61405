"""Signature schemes: how each sender signs a delivery, as data plus a small class.

Every scheme computes HMAC-SHA256 over ``<prefix><raw body>``, where the prefix comes from the
signed-message template (``{body}``, ``{timestamp}.{body}``, ``{id}.{timestamp}.{body}``,
``v0:{timestamp}:{body}``). The body is never decoded, re-serialized or copied: the prefix is fed
to the MAC first and the body's bytes after it. Digests are compared with
``hmac.compare_digest`` against every configured key (rotation) and every signature the header
carries.

Every malformed header value raises one of our ``Rejected`` errors; nothing else escapes
``verify`` (a hypothesis test feeds the parsers arbitrary text to prove it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import string
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from webhook_guard.core.headers import Headers
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
_TEMPLATE_FIELD = re.compile(r"\{(\w*)\}")
# Unix seconds have 10 digits until 2286; more than 12 is never a real timestamp.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Bodies larger than this are not parsed just to find an event type or id.
_MAX_JSON_SNIFF = 1 << 20
# {"name": "value" at the very start of a body, the value free of escapes.
_FIRST_STRING_MEMBER = re.compile(rb'\A\s*\{\s*"(\w+)"\s*:\s*"([^"\\]*)"')

Encoding = Literal["hex", "base64"]
SecretFormat = Literal["utf8", "whsec_base64"]


class Verified:
    """What a successful verification learned about the delivery.

    ``delivery_key`` (the sender's delivery id, for dedupe, not yet scoped by endpoint) and
    ``event_type`` may come from the body (Stripe's ``id``, a JSON ``type``, the body's sha256):
    they are worked out on first use, so that verifying costs the MAC and nothing more.
    """

    __slots__ = (
        "_body",
        "_event",
        "_headers",
        "_key",
        "_scheme",
        "_signed",
        "secret_index",
        "timestamp",
    )

    def __init__(
        self,
        scheme: HmacScheme,
        headers: Headers,
        body: bytes,
        signed: _Signed | None,
        timestamp: int | None,
        secret_index: int,  # which configured secret matched: rotation progress, for the logs
    ) -> None:
        self._scheme, self._headers, self._body, self._signed = scheme, headers, body, signed
        self.timestamp = timestamp
        self.secret_index = secret_index
        self._key: tuple[str | None] | None = None
        self._event: tuple[str | None] | None = None

    @property
    def delivery_key(self) -> str | None:
        if self._key is None:
            self._key = (self._scheme._delivery_key(self._headers, self._body, self._signed),)
        return self._key[0]

    @property
    def event_type(self) -> str | None:
        if self._event is None:
            self._event = (self._scheme._event_type(self._headers, self._body),)
        return self._event[0]


@dataclass(frozen=True)
class _Signed:
    """The parts of a request's headers that a scheme signs or checks."""

    signatures: list[bytes]
    timestamp: str | None
    msg_id: str | None


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
        id_header: header with the sender's delivery id (the dedupe key), if any.
        id_scope_header: header whose value scopes the id (GitHub's hook id), if any.
        event_header: header with the event type, if any.
        event_fields: JSON body fields tried, in order, for the event type when no header has it.
        id_fields: JSON body fields tried for the delivery id when no header has it.
        body_hash_id: fall back to the body's sha256 as the delivery id (a sender's retry resends
            the same bytes).
        secret_format: ``"utf8"``, or ``"whsec_base64"``: the key is the base64 after ``whsec_``.
    """

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
        self._signs_timestamp = "timestamp" in fields
        self._prefix_template = template[: -len("{body}")]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- keys ------------------------------------------------------------------------------

    def key_for(self, secret: str) -> bytes:
        """The HMAC key a secret stands for. Raises ConfigurationError, never echoing it."""
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
        signed = self._parse(headers)
        timestamp = self._check_timestamp(signed.timestamp, now) if self._signs_timestamp else None
        mac_prefix = self._message_prefix(signed)
        matched = self._matching_key(keys, mac_prefix, body, signed.signatures)
        if matched is None:
            raise SignatureMismatch(
                f"{self.signature_header} matches the raw body under none of the "
                f"{len(keys)} configured secret(s); the sender must sign the exact bytes it sends, "
                "with the same secret"
            )
        # Header lookups are cheap and refuse a header repeated with different values: do them
        # now. What comes from the body is worked out only when asked for.
        for name in (self.id_scope_header, self.event_header):
            if name:
                headers.get(name)
        return Verified(self, headers, body, signed, timestamp, matched)

    def _parse(self, headers: Headers) -> _Signed:
        raw = headers.get(self.signature_header)
        if raw is None or not raw.strip():
            raise MissingSignature(f"no {self.signature_header} header")
        signatures = [self._decode_signature(raw.strip())]
        return _Signed(signatures, self._header_timestamp(headers), self._header_id(headers))

    def _header_timestamp(self, headers: Headers) -> str | None:
        return headers.get(self.timestamp_header) if self.timestamp_header else None

    def _header_id(self, headers: Headers) -> str | None:
        return headers.get(self.id_header) if self.id_header else None

    def _decode_signature(self, value: str, prefix: str | None = None) -> bytes:
        prefix = self.prefix if prefix is None else prefix
        if prefix and not value.startswith(prefix):
            raise MalformedSignature(f"{self.signature_header} must start with {prefix!r}")
        encoded = value[len(prefix) :]
        try:
            if self.encoding == "hex":
                digest = bytes.fromhex(encoded)
            else:
                digest = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise MalformedSignature(f"{self.signature_header} is not {self.encoding}") from None
        if len(digest) != _DIGEST_SIZE:
            raise MalformedSignature(
                f"{self.signature_header} holds {len(digest)} bytes, not a SHA-256 digest"
            )
        return digest

    def _check_timestamp(self, raw: str | None, now: float) -> int:
        where = self.timestamp_header or self.signature_header
        if raw is None or not raw.strip():
            raise MissingTimestamp(f"no timestamp in {where}")
        raw = raw.strip()
        if not _TIMESTAMP.fullmatch(raw):
            raise MalformedTimestamp(f"{where} is not Unix seconds")
        timestamp = int(raw)
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
        return self._prefix_template.format(
            timestamp=signed.timestamp.strip() if signed.timestamp else "",
            id=signed.msg_id or "",
        ).encode("utf-8", "surrogatepass")  # a lone surrogate in a header must not raise

    @staticmethod
    def _matching_key(
        keys: Sequence[bytes], prefix: bytes, body: bytes, signatures: Sequence[bytes]
    ) -> int | None:
        found: int | None = None
        for index, key in enumerate(keys):
            if prefix:
                mac = hmac.new(key, prefix, hashlib.sha256)
                mac.update(body)
                expected = mac.digest()
            else:
                expected = hmac.digest(key, body, "sha256")
            for signature in signatures:
                # No early exit: the time taken must not tell which secret or signature matched.
                if hmac.compare_digest(expected, signature) and found is None:
                    found = index
        return found

    def _delivery_key(self, headers: Headers, body: bytes, signed: _Signed | None) -> str | None:
        key = signed.msg_id if self.id_header and signed is not None else None
        if not key and self.id_fields:
            key = _json_field(body, self.id_fields)
        if key and self.id_scope_header:
            scope = headers.get(self.id_scope_header)
            if scope:
                key = f"{scope}:{key}"
        if not key and self.body_hash_id:
            key = "sha256:" + hashlib.sha256(body).hexdigest()
        return key or None

    def _event_type(self, headers: Headers, body: bytes) -> str | None:
        if self.event_header:
            event = headers.get(self.event_header)
            if event:
                return event
        return _json_field(body, self.event_fields) if self.event_fields else None

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

    def __init__(self, *, tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> None:
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
        )

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
            raise MissingSignature("no webhook-signature (or svix-signature) header")
        msg_id = self._header_id(headers)
        if not msg_id:
            raise MalformedSignature(
                "no webhook-id (or svix-id) header: it is part of the signed message"
            )
        entries = raw.split()
        signatures = [self._decode_signature(e) for e in entries if e.startswith("v1,")]
        if not signatures:
            raise MalformedSignature("webhook-signature holds no 'v1,<base64>' entry")
        return _Signed(signatures, self._header_timestamp(headers), msg_id)


class StripeScheme(HmacScheme):
    """Stripe: ``Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]`` over ``ts.body``.

    The key is the whole ``whsec_...`` string as UTF-8, as stripe-python uses it. The delivery id
    and event type come from the verified body's ``id`` and ``type`` (the body's sha256 when it
    has no ``id``).
    """

    def __init__(self, *, tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> None:
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
        )

    @staticmethod
    def _timestamp_in_signature() -> bool:
        return True

    def _parse(self, headers: Headers) -> _Signed:
        raw = headers.get(self.signature_header)
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
        return _Signed(signatures, timestamp, None)

    def _format_signature(self, digest: bytes, timestamp: int) -> str:
        return f"t={timestamp},v1={digest.hex()}"


def cloudaipilot(*, tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> HmacScheme:
    """CloudAIPilot (the default): ``X-CloudAIPilot-Signature: sha256=<hex>`` over the raw body.

    The guide documents no delivery-id header: ``X-CloudAIPilot-Delivery`` is used when present,
    else the sha256 of the raw body, because a sender's retry resends the same bytes.
    """
    return HmacScheme(
        "cloudaipilot",
        signature_header="X-CloudAIPilot-Signature",
        prefix="sha256=",
        encoding="hex",
        tolerance=tolerance,
        id_header="X-CloudAIPilot-Delivery",
        event_header="X-CloudAIPilot-Event",
        event_fields=("event", "type"),
        body_hash_id=True,
    )


def github(*, tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> HmacScheme:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>``; dedupe on the hook-scoped delivery id."""
    return HmacScheme(
        "github",
        signature_header="X-Hub-Signature-256",
        prefix="sha256=",
        encoding="hex",
        tolerance=tolerance,
        id_header="X-GitHub-Delivery",
        id_scope_header="X-GitHub-Hook-ID",
        event_header="X-GitHub-Event",
    )


def slack(*, tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> HmacScheme:
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
        id_fields=("event_id",),
        event_fields=("type",),
        body_hash_id=True,
    )


def shopify(*, tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> HmacScheme:
    """Shopify: ``X-Shopify-Hmac-Sha256: <base64>`` over the raw body."""
    return HmacScheme(
        "shopify",
        signature_header="X-Shopify-Hmac-Sha256",
        encoding="base64",
        tolerance=tolerance,
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
