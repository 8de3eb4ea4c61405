"""The cheap verification path: keyed HMAC states cached per secret, the prefix, the timestamp.

Each cache or shortcut must give exactly what the plain computation gives: these tests compare
them with ``hmac.new``, ``str.format`` and the old per-request code, and check that a cached
state is never changed by a verification (sequentially and from threads).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import pickle
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_guard.core.headers import Headers
from webhook_guard.core.schemes import (
    PRESETS,
    HmacScheme,
    StandardWebhooksScheme,
    _b64decode,
    _KeyedMacs,
    _KeyedSha256,
    _percent_format,
    get_scheme,
)
from webhook_guard.exceptions import MalformedSignature, MalformedTimestamp, SignatureMismatch
from webhook_guard.testing import sign_request

NOW = 1_700_000_000
SECRET = "fast-path-secret-Qx7v"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def secret_for(preset: str, n: int = 0) -> str:
    if preset == "standard":
        return STANDARD_SECRET if n == 0 else "whsec_c2Vjb25kLXN0YW5kYXJkLWtleQ=="
    if preset == "stripe":
        return f"whsec_fast-{n}"
    return f"{SECRET}-{n}"


# -- the keyed HMAC state ------------------------------------------------------------------


@pytest.mark.parametrize("key_size", [0, 1, 31, 32, 63, 64, 65, 100, 1000])
@pytest.mark.parametrize("prefix", [b"", b"1700000000.", b"msg_1.1700000000.", b"v0:1:"])
def test_keyed_state_is_hmac_sha256(key_size: int, prefix: bytes) -> None:
    """mac(prefix, body) is hmac.new(key, prefix + body, sha256), for keys shorter than, equal
    to and longer than SHA-256's block (a longer key is hashed first), and any body."""
    key = bytes((7 * i + 3) % 256 for i in range(key_size))
    keyed = _KeyedSha256(key)
    for body in (b"", b"x", b'{"id": "evt_1"}', bytes(range(256)) * 300):
        expected = hmac.new(key, prefix + body, hashlib.sha256).digest()
        assert keyed.mac(prefix, body) == expected


def test_keyed_state_is_not_changed_by_use() -> None:
    """Two different bodies in sequence, then the first again: each gets its own digest, so the
    cached state is only ever copied."""
    key = b"k" * 40
    keyed = _KeyedSha256(key)
    a, b = b'{"n": 1}', b'{"n": 2}' * 50
    first = keyed.mac(b"", a)
    assert keyed.mac(b"1.", b) == hmac.new(key, b"1." + b, hashlib.sha256).digest()
    assert keyed.mac(b"", a) == first == hmac.new(key, a, hashlib.sha256).digest()


def test_keyed_state_shows_and_pickles_no_key() -> None:
    """Neither the state nor a scheme's cache shows key material; the state refuses pickling
    and the cache pickles (and copies) empty."""
    secret = "repr-secret-Qx7v"
    scheme = get_scheme("cloudaipilot")
    key = scheme.key_for(secret)
    headers = sign_request(scheme, secret, b"{}")
    scheme.verify(Headers(headers), b"{}", [key], NOW)
    assert len(scheme._macs) == 1
    for text in (
        repr(scheme._macs),
        str(scheme._macs),
        repr(scheme._macs.get(key)),
        repr(vars(scheme)),
        repr(scheme),
    ):
        assert secret not in text
        assert key.hex() not in text
        assert repr(key) not in text
    with pytest.raises(TypeError):
        pickle.dumps(scheme._macs.get(key))
    assert len(pickle.loads(pickle.dumps(scheme._macs))) == 0
    assert len(copy.deepcopy(scheme._macs)) == 0
    assert len(copy.copy(scheme._macs)) == 0


# -- the cache, per secret -----------------------------------------------------------------


def test_cache_holds_one_state_per_secret() -> None:
    """The same key finds the same state; equal keys in other bytes objects too; another key
    gets its own."""
    cache = _KeyedMacs()
    one = cache.get(b"secret-one")
    assert cache.get(b"secret-one") is one
    assert cache.get(bytes(bytearray(b"secret-one"))) is one
    two = cache.get(b"secret-two")
    assert two is not one
    assert len(cache) == 2
    assert one.mac(b"", b"x") != two.mac(b"", b"x")


def test_cache_is_bounded() -> None:
    """A caller trying many keys (a diagnosis) churns the cache but never grows it past its
    bound; every key still gives the right MAC."""
    from webhook_guard.core.schemes import _MAX_PREPARED_KEYS

    cache = _KeyedMacs()
    for n in range(3 * _MAX_PREPARED_KEYS):
        key = f"candidate-{n}".encode()
        assert cache.get(key).mac(b"", b"body") == hmac.digest(key, b"body", "sha256")
        assert len(cache) <= _MAX_PREPARED_KEYS


def test_unhashable_key_still_verifies() -> None:
    """A bytearray key (bytes-like, unhashable) is keyed per call rather than refused."""
    scheme = get_scheme("github")
    key = scheme.key_for(SECRET)
    headers = sign_request(scheme, SECRET, b"{}")
    assert scheme.verify(Headers(headers), b"{}", [bytearray(key)], NOW).secret_index == 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_rotation_with_cached_states(preset: str) -> None:
    """One scheme object verifies under old keys, then both (rotation), then the new alone:
    each request is matched against the keys passed with it, never a cached earlier set."""
    scheme = get_scheme(preset)
    old, new = scheme.key_for(secret_for(preset, 0)), scheme.key_for(secret_for(preset, 1))
    body = b'{"id": "evt_rot", "type": "rot.ated", "event": "rot.ated"}'
    by_old = sign_request(scheme, secret_for(preset, 0), body, timestamp=NOW)
    by_new = sign_request(scheme, secret_for(preset, 1), body, timestamp=NOW)
    assert scheme.verify(Headers(by_old), body, [old], NOW).secret_index == 0
    with pytest.raises(SignatureMismatch):
        scheme.verify(Headers(by_new), body, [old], NOW)
    assert scheme.verify(Headers(by_old), body, [old, new], NOW).secret_index == 0
    assert scheme.verify(Headers(by_new), body, [old, new], NOW).secret_index == 1
    assert scheme.verify(Headers(by_new), body, [new, old], NOW).secret_index == 0
    assert scheme.verify(Headers(by_new), body, [new], NOW).secret_index == 0
    with pytest.raises(SignatureMismatch):
        scheme.verify(Headers(by_old), body, [new], NOW)
    assert len(scheme._macs) == 2


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_two_bodies_in_sequence_and_from_threads(preset: str) -> None:
    """Different bodies verified one after another and interleaved from threads on one scheme
    object all pass, and a tampered one still fails: no request sees another's bytes."""
    scheme = get_scheme(preset)
    keys = [scheme.key_for(secret_for(preset, 1)), scheme.key_for(secret_for(preset, 0))]
    requests = []
    for n in range(8):
        body = b'{"id": "evt_%d", "type": "t.%d", "pad": "%s"}' % (n, n, b"p" * (n * 700))
        requests.append(
            (body, sign_request(scheme, secret_for(preset, n % 2), body, timestamp=NOW))
        )
    for body, headers in requests + requests[::-1]:
        scheme.verify(Headers(headers), body, keys, NOW)

    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(offset: int) -> None:
        try:
            start.wait()
            for i in range(200):
                body, headers = requests[(offset + i) % len(requests)]
                verified = scheme.verify(Headers(headers), body, keys, NOW)
                assert verified.secret_index == 1 - (offset + i) % len(requests) % 2
                if i % 10 == 0:
                    with pytest.raises(SignatureMismatch):
                        scheme.verify(Headers(headers), body + b" ", keys, NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_pickled_scheme_verifies() -> None:
    """A scheme with keyed states pickles (the states are left behind) and its copy verifies."""
    scheme = get_scheme("slack")
    key = scheme.key_for(SECRET)
    headers = sign_request(scheme, SECRET, b"{}", timestamp=NOW)
    scheme.verify(Headers(headers), b"{}", [key], NOW)
    clone = pickle.loads(pickle.dumps(scheme))
    assert len(clone._macs) == 0
    assert clone.verify(Headers(headers), b"{}", [key], NOW).secret_index == 0


# -- the signed-message prefix -------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{body}",
        "{timestamp}.{body}",
        "{id}.{timestamp}.{body}",
        "v0:{timestamp}:{body}",
        "100%:{timestamp}%s%%{body}",
        "{{literal}}{id}|{timestamp}|{id}{body}",
    ],
)
def test_prefix_format_is_str_format(template: str) -> None:
    """The %-format built once per scheme gives what str.format gave per request."""
    prefix = template[: -len("{body}")]
    fmt, fields = _percent_format(prefix)
    values = {"timestamp": "1700000000", "id": "msg_%s_{x}"}
    assert fmt % tuple(values[f] for f in fields) == prefix.format(**values)


def test_custom_template_with_percent_and_braces_verifies() -> None:
    """A custom scheme whose template holds '%' and escaped braces signs and verifies."""
    scheme = HmacScheme(
        "custom",
        signature_header="X-Sig",
        template="{{%{id}%s{timestamp}}}:{body}",
        timestamp_header="X-Ts",
        id_header="X-Id",
    )
    headers = sign_request(scheme, SECRET, b"{}", timestamp=NOW, msg_id="m%1")
    key = scheme.key_for(SECRET)
    prefix = f"{{%m%1%s{NOW}}}:".encode()
    assert headers["X-Sig"] == hmac.new(key, prefix + b"{}", hashlib.sha256).hexdigest()
    assert scheme.verify(Headers(headers), b"{}", [key], NOW).secret_index == 0


# -- the timestamp check without a regex ---------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "١٧٠٠٠٠٠٠٠٠",
        "１７００００００００",
        "170000000²",
        "1700000000.5",
        "+1700000000",
        "0x1",
        "1" * 13,
    ],
)
def test_timestamp_must_be_ascii_digits(value: str) -> None:
    """Digits of other scripts, superscripts, signs, fractions and over 12 digits are not Unix
    seconds, as the regex [0-9]{1,12} had it."""
    scheme = get_scheme("slack")
    headers = sign_request(scheme, SECRET, b"{}", timestamp=NOW)
    headers["X-Slack-Request-Timestamp"] = value
    with pytest.raises(MalformedTimestamp, match="X-Slack-Request-Timestamp is not Unix seconds"):
        scheme.verify(Headers(headers), b"{}", [scheme.key_for(SECRET)], NOW)


def test_timestamp_with_spaces_and_twelve_digits() -> None:
    """Surrounding whitespace is stripped; twelve digits are read (and judged by tolerance)."""
    scheme = get_scheme("slack")
    key = scheme.key_for(SECRET)
    headers = sign_request(scheme, SECRET, b"{}", timestamp=NOW)
    headers["X-Slack-Request-Timestamp"] = f"  {NOW}\t"
    assert scheme.verify(Headers(headers), b"{}", [key], NOW).timestamp == NOW
    headers["X-Slack-Request-Timestamp"] = "9" * 12
    with pytest.raises(Exception, match="in the future"):
        scheme.verify(Headers(headers), b"{}", [key], NOW)


# -- verify's written-out steps give what the step methods give ----------------------------


def _outcome(scheme: HmacScheme, headers: object, body: bytes, keys: list[bytes]) -> object:
    """What verify returns (its public fields) or raises (type, message, hint)."""
    try:
        verified = scheme.verify(Headers(headers), body, keys, NOW)  # type: ignore[arg-type]
    except Exception as exc:
        return (type(exc), str(exc), getattr(exc, "hint", None))
    return (
        verified.timestamp,
        verified.secret_index,
        verified.sender_id,
        verified.delivery_key,
        verified.event_type,
    )


def _variants(preset: str, scheme: HmacScheme, body: bytes) -> Iterator[object]:
    """Good and bad header sets for one preset: every way verify can answer."""
    good = sign_request(scheme, secret_for(preset, 0), body, timestamp=NOW, event="a.b")
    if preset == "github":
        good["X-GitHub-Hook-ID"] = "42"
    names = [
        h
        for h in (
            scheme.signature_header,
            scheme.timestamp_header,
            scheme.id_header,
            scheme.id_scope_header,
            scheme.event_header,
        )
        if h
    ]
    yield good
    yield list(good.items())
    for name in names:
        yield {k: v for k, v in good.items() if k != name}
        yield {**good, name: ""}
        yield {**good, name: "  "}
        yield [*good.items(), (name.upper(), good.get(name, "x"))]  # repeated, same value
        yield [*good.items(), (name.lower(), "different")]  # repeated, different value
    sig = good[scheme.signature_header]
    for bad in (
        "sha256=zz",
        "v0=" + "ab" * 31,
        "v0=" + "ab" * 33,
        sig[:-2],
        sig + "=",
        " " + sig + " ",
        sig.upper(),
        "v1,AAAA",
        "t=1,v1=" + "00" * 32,
        f"t={NOW}",
        "garbage",
        sig.replace(sig[-3], "A" if sig[-3] != "A" else "B"),
    ):
        yield {**good, scheme.signature_header: bad}
    for stamp in ("", "abc", "١٧٠٠٠٠٠٠٠٠", str(NOW - 301), str(NOW + 301), str(NOW + 300)):
        if preset == "stripe":
            yield {**good, "Stripe-Signature": sig.replace(f"t={NOW}", f"t={stamp}")}
        elif scheme.timestamp_header:
            yield {**good, scheme.timestamp_header: stamp}
            yield {**good, scheme.timestamp_header: f" {stamp}\t"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_written_out_steps_answer_as_the_step_methods(preset: str) -> None:
    """For good and bad requests alike, verify's written-out steps, its parse by method, and
    every step by method return the same fields or raise the same error, message and hint."""
    body = b'{"id": "evt_9", "type": "a.b", "event": "a.b", "event_id": "Ev9"}'
    fast = get_scheme(preset)
    by_parse = get_scheme(preset)
    by_parse._own_parse = True
    by_steps = get_scheme(preset)
    by_steps._own_steps = True
    key_sets = [
        [fast.key_for(secret_for(preset, 0))],
        [fast.key_for(secret_for(preset, 1)), fast.key_for(secret_for(preset, 0))],
        [fast.key_for(secret_for(preset, 1))],
    ]
    seen = set()
    for headers in _variants(preset, fast, body):
        for keys in key_sets:
            for payload in (body, body + b" "):
                expected = _outcome(by_steps, headers, payload, keys)
                assert _outcome(fast, headers, payload, keys) == expected, headers
                assert _outcome(by_parse, headers, payload, keys) == expected, headers
                seen.add(expected[0] if isinstance(expected[0], type) else "ok")
    assert "ok" in seen and SignatureMismatch in seen and MalformedSignature in seen


@pytest.mark.parametrize("preset", ["cloudaipilot", "slack", "stripe"])
def test_body_timestamp_field_answers_as_the_step_methods(preset: str) -> None:
    """With body_timestamp_field set, both ways check the body's time after the MAC."""
    factory = PRESETS[preset]
    fast = factory(body_timestamp_field="ts")
    slow = factory(body_timestamp_field="ts")
    slow._own_steps = True
    key = fast.key_for(secret_for(preset, 0))
    for ts in (NOW, NOW - 1000, "x", None):
        body = b"{}" if ts is None else b'{"ts": %s}' % str(ts).encode()
        if ts == "x":
            body = b'{"ts": "x"}'
        headers = sign_request(fast, secret_for(preset, 0), body, timestamp=NOW)
        assert _outcome(fast, headers, body, [key]) == _outcome(slow, headers, body, [key])


def test_subclass_overriding_a_step_has_it_called() -> None:
    """A subclass's own step method is used, not verify's written-out copy of the base one."""
    calls: list[str] = []

    class Counting(HmacScheme):
        def _header_id(self, headers: Headers) -> str | None:
            calls.append("id")
            return super()._header_id(headers)

        def _matching_key(self, *args: object) -> int | None:
            calls.append("mac")
            return super()._matching_key(*args)  # type: ignore[arg-type]

    scheme = Counting("c", signature_header="X-Sig", id_header="X-Id")
    assert scheme._own_parse and scheme._own_steps
    assert not get_scheme("github")._own_parse and not get_scheme("github")._own_steps
    assert get_scheme("stripe")._own_parse and not get_scheme("stripe")._own_steps
    headers = sign_request(scheme, SECRET, b"{}", msg_id="m1")
    assert scheme.verify(Headers(headers), b"{}", [scheme.key_for(SECRET)], NOW).sender_id == "m1"
    assert calls == ["id", "mac"]


def _read(read: Callable[[], object]) -> object:
    try:
        return read()
    except Exception as exc:
        return (type(exc), str(exc))


_HEADER_VALUE = st.one_of(
    st.none(),
    st.text(alphabet="tv1=,0123456789abcdefAQ+/ \t", max_size=90),
    st.sampled_from([f"t={NOW},v1={'ab' * 32}", f"v1,{base64.b64encode(bytes(32)).decode()}"]),
)


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(["stripe", "standard"]),
    st.fixed_dictionaries(
        {
            name: _HEADER_VALUE
            for name in (
                "stripe-signature",
                "webhook-signature",
                "svix-signature",
                "webhook-id",
                "svix-id",
                "webhook-timestamp",
                "svix-timestamp",
            )
        }
    ),
)
def test_read_items_is_parse(preset: str, values: dict[str, str | None]) -> None:
    """Stripe's and Standard Webhooks' reading of the lower-cased dict gives what their _parse
    gives (signatures, timestamp, id), or raises the same error and message."""
    scheme = get_scheme(preset)
    assert scheme._reads_items
    items = {k: v for k, v in values.items() if v is not None}

    def by_parse() -> object:
        signed = scheme._parse(Headers(items))
        return signed.signatures, signed.timestamp, signed.msg_id

    assert _read(lambda: scheme._read_items(items)) == _read(by_parse)


def test_subclass_changing_a_parse_step_is_not_read_from_the_dict() -> None:
    """A subclass of a preset that changes a parse step has its own steps called."""

    class OtherId(StandardWebhooksScheme):
        def _header_id(self, headers: Headers) -> str | None:
            return "fixed"

    assert get_scheme("stripe")._reads_items and get_scheme("standard")._reads_items
    assert not OtherId()._reads_items
    assert not get_scheme("slack")._reads_items


def test_header_name_changed_after_construction_is_read() -> None:
    """verify reads headers by the scheme's current header names (kept lower-cased as set)."""
    scheme = get_scheme("github")
    headers = sign_request(scheme, SECRET, b"{}")
    headers["X-Other-Sig"] = headers.pop("X-Hub-Signature-256")
    scheme.signature_header = "X-Other-Sig"
    assert scheme.verify(Headers(headers), b"{}", [scheme.key_for(SECRET)], NOW).secret_index == 0


# -- base64 signatures without the regex ---------------------------------------------------


def _decoded(decode: Callable[[str], bytes], text: str) -> object:
    try:
        return decode(text)
    except ValueError as exc:  # binascii.Error included
        return (type(exc), str(exc))


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="AQgw+/=a9 \n\t-_é.", max_size=48))
def test_b64decode_is_validating_b64decode(text: str) -> None:
    """_b64decode returns what base64.b64decode(validate=True) returns, or raises as it does."""
    assert _decoded(_b64decode, text) == _decoded(
        lambda t: base64.b64decode(t, validate=True), text
    )


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 33])
def test_b64decode_round_trips(size: int) -> None:
    """Every canonical encoding decodes, with and without its padding refused alike."""
    data = bytes(range(size))
    text = base64.b64encode(data).decode()
    assert _b64decode(text) == data
    if text.endswith("="):
        assert _decoded(_b64decode, text.rstrip("=")) == _decoded(
            lambda t: base64.b64decode(t, validate=True), text.rstrip("=")
        )
