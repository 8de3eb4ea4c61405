"""Why a webhook signature does not match: try the mistakes senders and receivers make.

``diagnose(secret, body, headers, scheme, now)`` returns ``[]`` when the request verifies as is,
else one ``Finding(cause, fix, code)`` per cause it can name. It recomputes the signature the
ways a buggy sender (or a receiver that did not keep the raw bytes) computes it:

- over re-serialized JSON instead of the raw bytes (compact or spaced separators, sorted keys,
  non-ASCII escaped or not), or the body without its trailing newline;
- with a secret that has surrounding whitespace, on either side;
- with a ``whsec_`` secret used the wrong way (decoded where the scheme uses the whole string,
  or the whole string where the scheme decodes it);
- with HMAC-SHA1, hex instead of base64 (or back), a missing or wrong prefix;
- the way another preset signs (its headers, or its signed-message format);

and it reads the timestamp (skew and its direction, milliseconds) and which of the sender's
headers arrived (a proxy that strips one). The explanation needing the fewest mistakes wins.

Pure functions: no I/O, no clock unless ``now`` is omitted, no framework. A finding never holds a
secret, a key or a computed digest: it says "matches when the secret is stripped", not the secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from webhook_guard.core.headers import Headers, HeadersLike
from webhook_guard.core.schemes import PRESETS, HmacScheme, StandardWebhooksScheme, StripeScheme
from webhook_guard.core.schemes import get_scheme as _get_scheme
from webhook_guard.exceptions import ConfigurationError, Rejected

__all__ = ["Finding", "diagnose", "signature_matches"]

# Explanations needing more mistakes at once are unlikely, and each one costs an HMAC of the
# whole body: this keeps the worst case for a 1 MiB body to about a second.
MAX_MISTAKES = 2
_KNOWN_PREFIX = re.compile(r"^(sha\d+=|v\d+[a-z]?[=,])")
_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGITS = re.compile(r"[0-9]+")
_DIGEST_SIZES = {32: "sha256", 20: "sha1"}
# Where the presets carry a timestamp or a message id: a sender of another format may have
# signed with one of these.
_TIMESTAMP_HEADERS = ("webhook-timestamp", "svix-timestamp", "X-Slack-Request-Timestamp")
_ID_HEADERS = ("webhook-id", "svix-id")
_FORMAT_OWNERS = {
    "{timestamp}.{body}": "stripe",
    "{id}.{timestamp}.{body}": "standard",
    "v0:{timestamp}:{body}": "slack",
    "{body}": "cloudaipilot, github and shopify",
}
_RAW_BODY_FIX = (
    "the sender must sign the exact bytes it sends, and the receiver must verify the raw body "
    "before parsing it (--body-file must hold the bytes as received, not a re-serialized copy)"
)


@dataclass(frozen=True)
class Finding:
    """One cause of a mismatch and what to change. ``code`` is stable, for tests and tools."""

    cause: str
    fix: str
    code: str

    def sentence(self) -> str:
        """The finding as one sentence: the cause, then the fix."""
        text = f"{self.cause}; {self.fix}"
        return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


@dataclass(frozen=True)
class _Received:
    """One signature entry of the request's header, decoded leniently."""

    prefix: str
    encoding: str  # "hex" or "base64"
    digest: bytes


# Something a sender may have used (a key, a body, a message prefix) and the mistakes it means.
_Candidate = tuple[tuple[Finding, ...], bytes]


@dataclass(frozen=True)
class _Variant:
    """One way of computing the signature, and the mistakes it stands for."""

    mistakes: tuple[Finding, ...]
    algorithm: str
    key: bytes
    message: bytes


def signature_matches(
    secret: str,
    body: bytes,
    headers: HeadersLike,
    scheme: str | HmacScheme = "cloudaipilot",
    now: float | None = None,
) -> bool:
    """True if the request verifies as is, exactly as a Guard of ``scheme`` would check it."""
    resolved = _get_scheme(scheme)
    try:
        key = resolved.key_for(secret)
        resolved.verify(Headers(headers), body, [key], time.time() if now is None else now)
    except (Rejected, ConfigurationError):
        return False
    return True


def diagnose(
    secret: str,
    body: bytes,
    headers: HeadersLike,
    scheme: str | HmacScheme = "cloudaipilot",
    now: float | None = None,
) -> list[Finding]:
    """``[]`` if the request verifies as is; else every cause found, each with its fix.

    Args:
        secret: the receiver's secret, as configured (or as you believe it is).
        body: the raw request body, exactly as it arrived.
        headers: the request's headers, as they arrived at the application.
        scheme: the receiver's scheme: a preset name or an ``HmacScheme``.
        now: Unix seconds to check a signed timestamp against; the real clock if omitted.
    """
    resolved = _get_scheme(scheme)
    now = time.time() if now is None else now
    if signature_matches(secret, body, headers, resolved, now):
        return []
    request = Headers(headers)
    findings: list[Finding] = []
    findings += _repeated_headers(request)
    findings += _secret_format(resolved, secret)
    header_findings, other_scheme = _header_findings(resolved, secret, body, request, now)
    timestamp, timestamp_findings = _timestamp(resolved, request, now)
    received = _received(resolved, request)
    match = _best_match(resolved, secret, body, request, timestamp, received)
    if match is not None:
        variant, entry = match
        findings += variant.mistakes
        findings += _format_findings(resolved, entry, variant.algorithm)
    elif received:
        findings += _format_findings(resolved, received[0], _DIGEST_SIZES[len(received[0].digest)])
    elif _signature_value(resolved, request):
        findings.append(_undecodable(resolved))
    findings += header_findings
    findings += timestamp_findings
    if match is None and not other_scheme and not _explains_mismatch(findings):
        findings.append(_unexplained())
    if not findings:  # verification failed for a reason none of the probes names
        findings.append(_unexplained())
    return _unique(findings)


# -- headers -------------------------------------------------------------------------------------


def _value(headers: Headers, name: str) -> str | None:
    """The header's first value; never raises on repeats (``_repeated_headers`` reports them)."""
    values = headers.get_all(name)
    return values[0] if values else None


def _signature_value(scheme: HmacScheme, headers: Headers) -> str | None:
    value = _value(headers, scheme.signature_header)
    if value is None and isinstance(scheme, StandardWebhooksScheme):
        value = _value(headers, "svix-signature")
    return value


def _sender_headers(scheme: HmacScheme) -> dict[str, bool]:
    """Every header a sender of ``scheme`` sends -> whether verification needs it."""
    names: dict[str, bool] = {scheme.signature_header: True}
    if scheme.timestamp_header:
        names[scheme.timestamp_header] = True
    if scheme.id_header:
        names[scheme.id_header] = "{id}" in scheme.template
    for optional in (scheme.id_scope_header, scheme.event_header):
        if optional:
            names[optional] = False
    return names


def _present(scheme: HmacScheme, headers: Headers, name: str) -> bool:
    if name in headers:
        return True
    if isinstance(scheme, StandardWebhooksScheme) and name.startswith("webhook-"):
        return "svix-" + name[len("webhook-") :] in headers
    return False


def _repeated_headers(headers: Headers) -> list[Finding]:
    found = []
    for name in dict.fromkeys(name for name, _ in headers):
        values = headers.get_all(name)
        if len(values) > 1 and any(v != values[0] for v in values[1:]):
            found.append(
                Finding(
                    f"the {name} header arrived {len(values)} times with different values, which "
                    "a receiver must refuse",
                    "find the proxy or middleware that appends a second copy and make it replace "
                    "the header instead",
                    "repeated_header",
                )
            )
    return found


def _header_findings(
    scheme: HmacScheme, secret: str, body: bytes, headers: Headers, now: float
) -> tuple[list[Finding], bool]:
    """Headers missing (stripped by a proxy) or another preset's headers; and whether another
    preset explains the request."""
    findings: list[Finding] = []
    sender = _sender_headers(scheme)
    missing = [n for n, needed in sender.items() if needed and not _present(scheme, headers, n)]
    arrived = [n for n in sender if _present(scheme, headers, n)]
    others = _other_schemes(scheme, secret, body, headers, now)
    findings += [finding for finding, _ in others]
    if missing and arrived:
        findings.append(
            Finding(
                f"the {_names(missing)} header{'s' if len(missing) > 1 else ''} of a {scheme.name} "
                f"sender did not arrive while {_names(arrived)} did: a proxy, load balancer or "
                "gateway in front strips " + ("them" if len(missing) > 1 else "it"),
                "make it forward every header unchanged (nginx drops names with underscores "
                "unless underscores_in_headers is on; gateways need an allow-list entry)",
                "header_stripped",
            )
        )
    elif missing and not others:
        findings.append(
            Finding(
                f"none of the headers a {scheme.name} sender sends arrived "
                f"({_names(list(sender))})",
                "either the sender does not sign (set the secret in its webhook settings) or a "
                "proxy in front strips them; compare with the headers in the sender's delivery "
                "log",
                "no_signature_headers",
            )
        )
    return findings, any(verified for _, verified in others)


def _names(names: list[str]) -> str:
    return ", ".join(names)


def _other_schemes(
    scheme: HmacScheme, secret: str, body: bytes, headers: Headers, now: float
) -> list[tuple[Finding, bool]]:
    """Presets whose signature header the request carries instead of ``scheme``'s."""
    found: list[tuple[Finding, bool]] = []
    for name in PRESETS:
        other = _get_scheme(name, tolerance=scheme.tolerance)
        if other.name == scheme.name or (
            other.signature_header.lower() == scheme.signature_header.lower()
        ):
            continue
        if _signature_value(other, headers) is None:
            continue
        verified = any(
            _verifies_ignoring_time(other, key, body, headers, now)
            for key in _plain_keys(other, secret)
        )
        if verified:
            finding = Finding(
                f"the request is signed the {other.name} way ({other.signature_header}) and "
                f"verifies as {other.name}, but it was checked as {scheme.name}",
                f"configure the receiver with scheme '{other.name}' (and pass --scheme "
                f"{other.name} here)",
                "wrong_scheme",
            )
        else:
            finding = Finding(
                f"the request carries {other.name}'s {other.signature_header} header, not "
                f"{scheme.name}'s {scheme.signature_header}: the sender signs the {other.name} way",
                f"configure the receiver with scheme '{other.name}', then run this again with "
                f"--scheme {other.name} to check the secret",
                "wrong_scheme",
            )
        found.append((finding, verified))
    return found


def _plain_keys(scheme: HmacScheme, secret: str) -> list[bytes]:
    keys = []
    for candidate in dict.fromkeys((secret, secret.strip())):
        try:
            keys.append(scheme.key_for(candidate))
        except ConfigurationError:
            continue
    return keys


def _verifies_ignoring_time(
    scheme: HmacScheme, key: bytes, body: bytes, headers: Headers, now: float
) -> bool:
    """Does the signature match, whatever the timestamp's age (skew is reported on its own)?"""
    timestamp = _timestamp_value(scheme, headers)
    when = float(timestamp) if timestamp and _DIGITS.fullmatch(timestamp) else now
    try:
        scheme.verify(headers, body, [key], when)
    except Rejected:
        return False
    return True


# -- the secret ------------------------------------------------------------------------------------


def _secret_format(scheme: HmacScheme, secret: str) -> list[Finding]:
    if scheme.secret_format != "whsec_base64":
        return []
    try:
        scheme.key_for(secret.strip())
    except ConfigurationError:
        return [
            Finding(
                f"the secret is not in the {scheme.name} form 'whsec_<base64>'",
                "copy the secret exactly as the sender's dashboard shows it; if the sender uses "
                "the whole string as the key (Stripe), use scheme 'stripe'",
                "secret_format",
            )
        ]
    return []


def _whitespace(text: str) -> str:
    """Names the whitespace around ``text``: 'a trailing newline', 'surrounding spaces', ..."""
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
    parts = []
    if lead:
        parts.append("leading " + _kind(lead))
    if trail:
        parts.append(
            "a trailing " + _kind(trail) if trail in ("\n", "\r\n") else "trailing " + _kind(trail)
        )
    return " and ".join(parts)


def _kind(space: str) -> str:
    if space in ("\n", "\r\n"):
        return "newline" if space == "\n" else "CRLF"
    if set(space) == {" "}:
        return "spaces" if len(space) > 1 else "space"
    return "whitespace"


def _key_variants(scheme: HmacScheme, secret: str) -> Iterator[_Candidate]:
    """The keys a sender may have used instead of the right one, each with its mistakes."""
    stripped = secret.strip()
    bases: list[tuple[tuple[Finding, ...], str]] = [((), secret)]
    padded: list[tuple[tuple[Finding, ...], str]] = []
    if stripped and stripped != secret:
        around = _whitespace(secret)
        receiver_copy = Finding(
            "the signature matches when the secret is stripped of its " + around.removeprefix("a "),
            f"the secret given here (the receiver's copy) has {around}: strip it where the "
            "secret is loaded (a file or an environment variable written with a newline), "
            "e.g. os.environ['WEBHOOK_SECRET'].strip()",
            "secret_whitespace",
        )
        bases.append(((receiver_copy,), stripped))
    elif stripped:
        for extra, what in (("\n", "newline"), ("\r\n", "CRLF"), (" ", "space")):
            sender_copy = Finding(
                f"the signature matches when a trailing {what} is added to the secret: the "
                f"sender signs with its secret plus a {what}",
                "strip the secret on the sender's side (it was read from a file or an "
                "environment variable that has it)",
                "sender_secret_whitespace",
            )
            padded.append(((sender_copy,), secret + extra))
    for mistakes, text in (*bases, *padded):
        try:
            yield mistakes, scheme.key_for(text)
        except ConfigurationError:
            continue
    for mistakes, text in bases:
        for whsec_mistakes, key in _whsec_variants(scheme, text):
            yield (*mistakes, *whsec_mistakes), key


def _whsec_variants(scheme: HmacScheme, secret: str) -> Iterator[_Candidate]:
    """Keys from a ``whsec_`` secret handled the other way than ``scheme`` handles it."""
    decodes = scheme.secret_format == "whsec_base64"
    if not secret.startswith("whsec_"):
        if decodes:
            yield _one(
                "the sender used the secret's text as the UTF-8 key instead of base64-decoding "
                f"it ({scheme.name} keys are the decoded bytes)",
                "fix the sender's key handling, or configure the receiver with the sender's "
                "own scheme",
                "whsec_not_decoded",
                secret.encode(),
            )
        return
    rest = secret[len("whsec_") :]
    if decodes:
        yield _one(
            "the sender used the whole 'whsec_...' string as the UTF-8 key instead of "
            f"base64-decoding the part after 'whsec_' ({scheme.name} keys are the decoded bytes)",
            "fix the sender's key handling; if the sender is Stripe, which uses the whole "
            "string, configure the receiver with scheme 'stripe'",
            "whsec_not_decoded",
            secret.encode(),
        )
        yield _one(
            "the sender used the text after 'whsec_' as the UTF-8 key without base64-decoding it",
            f"{scheme.name} keys are the base64-decoded bytes after 'whsec_': fix the sender",
            "whsec_not_decoded",
            rest.encode(),
        )
        return
    decoded = _b64(rest)
    if decoded:
        hint = (
            "Stripe keys are the whole 'whsec_...' string as UTF-8, as stripe-python uses them"
            if scheme.name == "stripe"
            else f"{scheme.name} keys are the secret's UTF-8 bytes"
        )
        yield _one(
            "the sender base64-decoded the part after 'whsec_' (the Standard Webhooks way) "
            "and used those bytes as the key",
            f"{hint}; if the sender follows Standard Webhooks, configure the receiver with "
            "scheme 'standard'",
            "whsec_decoded",
            decoded,
        )
    yield _one(
        "the sender used the secret without its 'whsec_' prefix",
        f"{scheme.name} keys are the whole string, 'whsec_' included: fix the sender",
        "whsec_prefix_dropped",
        rest.encode(),
    )


def _one(cause: str, fix: str, code: str, value: bytes) -> _Candidate:
    return (Finding(cause, fix, code),), value


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True) or None
    except (binascii.Error, ValueError):
        return None


# -- the body --------------------------------------------------------------------------------------


def _body_variants(body: bytes) -> Iterator[_Candidate]:
    """The bytes a sender may have signed instead of the body that arrived."""
    yield (), body
    seen = {body}
    for changed, what in ((body.rstrip(b"\r\n"), "without"), (body + b"\n", "with")):
        if changed not in seen:
            seen.add(changed)
            yield _one(
                f"the signature matches the body {what} a trailing newline, not the raw "
                "bytes that arrived",
                "sign and verify the exact bytes that travel (an editor or echo adds a newline "
                "to a saved body; --body-file must hold the bytes as received)",
                "body_trailing_newline",
                changed,
            )
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return
    if not isinstance(parsed, (dict, list)):
        return
    has_non_ascii = json.dumps(parsed) != json.dumps(parsed, ensure_ascii=False)
    for sort_keys, compact, ascii_only, indent in itertools.product(
        (False, True), (True, False), (True, False), (None, 2)
    ):
        if indent and compact:
            continue
        encoded = json.dumps(
            parsed,
            sort_keys=sort_keys,
            separators=(",", ":") if compact else None,
            ensure_ascii=ascii_only,
            indent=indent,
        ).encode("utf-8")
        if encoded in seen:
            continue
        seen.add(encoded)
        how = [
            "pretty-printed with indent=2"
            if indent
            else "compact separators=(',', ':')"
            if compact
            else "json.dumps's default ', ' and ': ' separators"
        ]
        if sort_keys:
            how.append("sorted keys")
        if has_non_ascii:
            how.append(
                "non-ASCII escaped as \\uXXXX by ensure_ascii=True"
                if ascii_only
                else "non-ASCII written as UTF-8 by ensure_ascii=False"
            )
        yield _one(
            f"the signature was computed over re-serialized JSON ({', '.join(how)}), not over "
            "the raw bytes that arrived",
            _RAW_BODY_FIX,
            "reserialized_json",
            encoded,
        )


# -- the signed message --------------------------------------------------------------------------


def _timestamp_value(scheme: HmacScheme, headers: Headers) -> str | None:
    if isinstance(scheme, StripeScheme):
        raw = _value(headers, scheme.signature_header) or ""
        for item in raw.split(","):
            name, _, stamp = item.strip().partition("=")
            if name == "t":
                return stamp.strip()
        return None
    value: str | None = None
    if isinstance(scheme, StandardWebhooksScheme):
        value = _value(headers, "webhook-timestamp") or _value(headers, "svix-timestamp")
    elif scheme.timestamp_header:
        value = _value(headers, scheme.timestamp_header)
    return value.strip() if value else None


def _id_value(scheme: HmacScheme, headers: Headers) -> str | None:
    if isinstance(scheme, StandardWebhooksScheme):
        return _value(headers, "webhook-id") or _value(headers, "svix-id")
    return _value(headers, scheme.id_header) if scheme.id_header else None


def _timestamp(
    scheme: HmacScheme, headers: Headers, now: float
) -> tuple[str | None, list[Finding]]:
    if "{timestamp}" not in scheme.template:
        return None, []
    raw = _timestamp_value(scheme, headers)
    where = scheme.timestamp_header or scheme.signature_header
    if not raw:
        return None, []  # a missing header is reported with the other missing headers
    if not _DIGITS.fullmatch(raw):
        return raw, [
            Finding(
                f"{where} holds {raw[:40]!r}, not Unix seconds",
                "the sender must send (and sign) the time as whole seconds since 1970",
                "timestamp_malformed",
            )
        ]
    if len(raw) == 13:
        return raw, [
            Finding(
                f"{where} holds Unix milliseconds (13 digits), not seconds",
                "the sender must send (and sign) whole seconds: divide by 1000",
                "timestamp_milliseconds",
            )
        ]
    skew = now - int(raw)
    if abs(skew) <= scheme.tolerance:
        return raw, []
    if skew > 0:
        finding = Finding(
            f"the timestamp in {where} is {skew:.0f} s in the past, beyond the "
            f"{scheme.tolerance:.0f} s tolerance",
            "the request is old (a replay of saved headers, or a delivery held up on the way) or "
            "this host's clock is ahead of the sender's: send a fresh delivery instead of "
            "replaying one, and sync both clocks with NTP",
            "timestamp_skew",
        )
    else:
        finding = Finding(
            f"the timestamp in {where} is {-skew:.0f} s in the future, beyond the "
            f"{scheme.tolerance:.0f} s tolerance",
            "the sender's clock is ahead of this host's (or this host's is behind): sync both "
            "clocks with NTP",
            "timestamp_skew",
        )
    return raw, [finding]


def _message_prefixes(
    scheme: HmacScheme, headers: Headers, timestamp: str | None
) -> Iterator[_Candidate]:
    """The scheme's own signed-message prefix, then other presets' formats that the request's
    headers have the values for."""
    own_id = _id_value(scheme, headers)
    own = _format(scheme.template, timestamp, own_id)
    if own is not None:
        yield (), own
    timestamps: list[str | None] = [*dict.fromkeys(_any_timestamps(headers, timestamp))] or [None]
    ids: list[str | None] = [*dict.fromkeys(_any_ids(headers, own_id))] or [None]
    for template, owner in _FORMAT_OWNERS.items():
        if template == scheme.template:
            continue
        for ts, msg_id in itertools.product(timestamps, ids):
            prefix = _format(template, ts, msg_id)
            if prefix is None:
                continue
            yield _one(
                f"the signature was computed over '{template}' (the {owner} format), but "
                f"{scheme.name} signs '{scheme.template}'",
                f"configure the receiver with the sender's scheme, or the sender to sign "
                f"'{scheme.template}'",
                "wrong_format",
                prefix,
            )


def _any_ids(headers: Headers, own: str | None) -> Iterator[str]:
    for value in (own, *(_value(headers, name) for name in _ID_HEADERS)):
        if value:
            yield value


def _any_timestamps(headers: Headers, own: str | None) -> Iterator[str]:
    if own:
        yield own
    for name in _TIMESTAMP_HEADERS:
        value = _value(headers, name)
        if value:
            yield value.strip()
    stripe = _timestamp_value(_get_scheme("stripe"), headers)
    if stripe:
        yield stripe


def _format(template: str, timestamp: str | None, msg_id: str | None) -> bytes | None:
    prefix = template[: -len("{body}")]
    if "{timestamp}" in prefix and not timestamp:
        return None
    if "{id}" in prefix and not msg_id:
        return None
    text = prefix.replace("{timestamp}", timestamp or "").replace("{id}", msg_id or "")
    return text.encode("utf-8", "surrogatepass")


# -- the signature header ------------------------------------------------------------------------


def _expected_prefix(scheme: HmacScheme) -> str:
    return "v1=" if isinstance(scheme, StripeScheme) else scheme.prefix


def _received(scheme: HmacScheme, headers: Headers) -> list[_Received]:
    """Every digest the signature header holds, whatever its prefix and encoding."""
    raw = _signature_value(scheme, headers)
    if raw is None:
        return []
    if isinstance(scheme, StripeScheme):
        entries = [e.strip() for e in raw.split(",") if not e.strip().startswith("t=")]
    elif isinstance(scheme, StandardWebhooksScheme):
        entries = raw.split()
    else:
        entries = [raw.strip()]
    found = []
    for entry in entries:
        match = _KNOWN_PREFIX.match(entry)
        prefix = match.group(1) if match else ""
        for encoding, digest in _decodings(entry[len(prefix) :].strip()):
            found.append(_Received(prefix, encoding, digest))
    return found


def _decodings(text: str) -> Iterator[tuple[str, bytes]]:
    if _HEX.fullmatch(text) and len(text) % 2 == 0 and len(text) // 2 in _DIGEST_SIZES:
        yield "hex", bytes.fromhex(text)
        return
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            digest = decode(padded)
        except (binascii.Error, ValueError):
            continue
        if len(digest) in _DIGEST_SIZES:
            yield "base64", digest
            return


def _format_findings(scheme: HmacScheme, entry: _Received, algorithm: str) -> list[Finding]:
    header = scheme.signature_header
    expected = _expected_prefix(scheme)
    findings = []
    if entry.prefix != expected and not (algorithm == "sha1" and entry.prefix == "sha1="):
        if not entry.prefix:
            cause = f"{header} lacks the '{expected}' prefix in front of the digest"
            fix = f"send '{expected}<{scheme.encoding} digest>', the whole value is compared"
        elif not expected:
            cause = f"{header} starts with '{entry.prefix}', but holds only the digest"
            fix = f"send the bare {scheme.encoding} digest, without '{entry.prefix}'"
        else:
            cause = f"{header} starts with '{entry.prefix}' instead of '{expected}'"
            fix = f"send '{expected}<{scheme.encoding} digest>'"
            if entry.prefix == "sha1=" and algorithm == "sha256":
                cause += " (over a SHA-256 digest)"
        findings.append(Finding(cause, fix, "wrong_prefix" if entry.prefix else "missing_prefix"))
    if entry.encoding != scheme.encoding:
        how = (
            "hmac.new(key, message, 'sha256').hexdigest()"
            if scheme.encoding == "hex"
            else "base64.b64encode(hmac.new(key, message, 'sha256').digest())"
        )
        findings.append(
            Finding(
                f"the digest in {header} is {entry.encoding}-encoded; {scheme.name} expects "
                f"{scheme.encoding}",
                f"encode the digest as {scheme.encoding}: {how}",
                "wrong_encoding",
            )
        )
    return findings


def _undecodable(scheme: HmacScheme) -> Finding:
    return Finding(
        f"{scheme.signature_header} holds no hex or base64 SHA-256 digest that can be decoded",
        f"the sender must send {_expected_prefix(scheme)!r} followed by the {scheme.encoding} "
        "HMAC-SHA256 digest; check that the header is not cut or re-encoded on the way",
        "malformed_signature",
    )


# -- matching ------------------------------------------------------------------------------------


def _best_match(
    scheme: HmacScheme,
    secret: str,
    body: bytes,
    headers: Headers,
    timestamp: str | None,
    received: list[_Received],
) -> tuple[_Variant, _Received] | None:
    """The variant with the fewest mistakes whose digest the request carries."""
    if not received:
        return None
    algorithms = {_DIGEST_SIZES[len(r.digest)] for r in received}
    variants = sorted(
        _variants(scheme, secret, body, headers, timestamp, algorithms),
        key=lambda v: len(v.mistakes),
    )
    for variant in variants:
        digest = hmac.new(variant.key, variant.message, variant.algorithm).digest()
        for entry in received:
            if hmac.compare_digest(digest, entry.digest):
                return variant, entry
    return None


def _variants(
    scheme: HmacScheme,
    secret: str,
    body: bytes,
    headers: Headers,
    timestamp: str | None,
    algorithms: Iterable[str],
) -> Iterator[_Variant]:
    keys = list(_key_variants(scheme, secret))
    bodies = list(_body_variants(body))
    prefixes = list(_message_prefixes(scheme, headers, timestamp))
    sha1 = Finding(
        f"the signature is HMAC-SHA1, but {scheme.name} signs with HMAC-SHA256",
        "configure the sender to sign with SHA-256 (GitHub: read X-Hub-Signature-256, not the "
        "legacy X-Hub-Signature)",
        "sha1",
    )
    for algorithm in sorted(algorithms, key=lambda a: a != "sha256"):
        extra: tuple[Finding, ...] = () if algorithm == "sha256" else (sha1,)
        for (key_wrong, key), (body_wrong, payload), (prefix_wrong, prefix) in itertools.product(
            keys, bodies, prefixes
        ):
            mistakes = (*key_wrong, *body_wrong, *prefix_wrong, *extra)
            if len(mistakes) <= MAX_MISTAKES:
                yield _Variant(mistakes, algorithm, key, prefix + payload)


def _explains_mismatch(findings: list[Finding]) -> bool:
    """Whether the findings already account for a signature that does not verify."""
    explaining = {
        "header_stripped",
        "no_signature_headers",
        "wrong_scheme",
        "repeated_header",
        "malformed_signature",
        "secret_format",
    }
    return any(f.code in explaining for f in findings)


def _unexplained() -> Finding:
    return Finding(
        "the signature matches none of the likely mistakes (re-serialized JSON, whitespace in "
        "the secret, whsec_ handling, SHA-1, hex vs base64, the prefix, another preset's format)",
        "the secret most likely differs between sender and receiver: copy it again from the "
        "sender's settings (after a rotation, the sender may sign with the new one); otherwise "
        "the body changed on the way (a proxy that re-encodes or decompresses it)",
        "secret_differs",
    )


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
