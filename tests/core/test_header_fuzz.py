"""Fuzzing what a sender controls: header text, body bytes, Content-Length.

Whatever arrives, the parsers either return or raise a ``Rejected`` (which the Guard turns into a
4xx): no ``ValueError``, ``binascii.Error``, ``UnicodeError`` or ``IndexError`` may escape, since
any of those would be a 500.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from webhook_guard.core.body import parse_content_length, read_wsgi_body
from webhook_guard.core.headers import Headers
from webhook_guard.core.schemes import PRESETS, HmacScheme, StandardWebhooksScheme, get_scheme
from webhook_guard.exceptions import Rejected
from webhook_guard.testing import FrozenClock, sign_request

PRESET_NAMES = sorted(PRESETS)
NOW = 1_700_000_000
SECRETS = {
    "standard": "whsec_c3RhbmRhcmQta2V5LWZvci1mdXp6aW5n",
    "stripe": "whsec_stripe-fuzz-secret",
}

# Every code point, with lone surrogates, control characters and separators drawn often (st.text
# alone almost never yields a surrogate).
any_char = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.characters(categories=["Cs"]),
    st.characters(categories=["Cc"]),
    st.sampled_from(",;= \t"),
)
any_text = st.lists(any_char, max_size=80).map("".join)
# Text that looks almost right, so the fuzzer reaches past the first check.
near_miss = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["", "sha256=", "v0=", "v1,", "v1a,", "t=1700000000,v1=", "t=", "v1=", " "]),
    st.text(st.sampled_from("0123456789abcdefABCDEF+/=,; tv_-\t\x00é♥"), max_size=90),
)
timestamps = st.integers(-(10**13), 10**13).map(str)
header_value = st.one_of(any_text, near_miss, timestamps)
bodies = st.one_of(
    st.binary(max_size=512),
    st.builds(
        lambda fields: json.dumps(fields).encode(),
        st.dictionaries(
            st.sampled_from(["id", "type", "event", "kind"]),
            st.one_of(any_text, st.integers(), st.none(), st.lists(st.integers(), max_size=3)),
        ),
    ),
)


def secret_for(preset: str) -> str:
    return SECRETS.get(preset, f"{preset}-fuzz-secret")


def headers_read_by(scheme: HmacScheme) -> list[str]:
    names = [
        scheme.signature_header,
        scheme.timestamp_header,
        scheme.id_header,
        scheme.id_scope_header,
        scheme.event_header,
    ]
    if isinstance(scheme, StandardWebhooksScheme):
        names += ["svix-signature", "svix-timestamp", "svix-id"]
    return [name for name in names if name]


def spellings(name: str) -> list[str]:
    return [name, name.lower(), name.upper()]


@pytest.mark.parametrize("preset", PRESET_NAMES)
@settings(max_examples=300, deadline=None)
@given(data=st.data(), body=bodies)
def test_arbitrary_headers_verify_or_reject(preset: str, data: st.DataObject, body: bytes) -> None:
    """Any text in any header a scheme reads, and any body, verifies or raises a Rejected."""
    scheme = get_scheme(preset)
    names = [spelling for name in headers_read_by(scheme) for spelling in spellings(name)]
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(names), header_value), max_size=8))
    keys = [scheme.key_for(secret_for(preset))]
    with contextlib.suppress(Rejected):
        scheme.verify(Headers(pairs), body, keys, FrozenClock(NOW)())


@pytest.mark.parametrize("preset", PRESET_NAMES)
@settings(max_examples=300, deadline=None)
@given(
    msg_id=any_text,
    event=any_text,
    scope=any_text,
    body=bodies,
    age=st.integers(-400, 400),
)
def test_correctly_signed_request_with_arbitrary_id_and_event(
    preset: str, msg_id: str, event: str, scope: str, body: bytes, age: int
) -> None:
    """A correctly signed request verifies whatever its id/scope/event headers say, if fresh."""
    scheme = get_scheme(preset)
    headers = sign_request(preset, secret_for(preset), body, timestamp=NOW - age, msg_id=msg_id)
    pairs = list(headers.items())
    if scheme.event_header:
        pairs.append((scheme.event_header, event))
    if scheme.id_scope_header:
        pairs.append((scheme.id_scope_header, scope))
    keys = [scheme.key_for(secret_for(preset))]
    try:
        verified = scheme.verify(Headers(pairs), body, keys, NOW)
    except Rejected as error:
        assert error.code == "timestamp_out_of_tolerance"
        assert abs(age) > scheme.tolerance
        return
    assert verified.secret_index == 0


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(st.none(), any_text, st.integers(-(10**25), 10**25).map(str), near_miss),
    cap=st.integers(0, 10**9),
)
@example(value="²", cap=10)
@example(value="１２", cap=100)
@example(value=" 12 ", cap=100)
@example(value="9" * 40, cap=10)
def test_parse_content_length_returns_or_rejects(value: str | None, cap: int) -> None:
    """parse_content_length returns None or a length within the cap, or raises a Rejected."""
    try:
        length = parse_content_length(value, cap)
    except Rejected:
        return
    assert length is None or 0 <= length <= cap


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=300),
    content_length=st.one_of(
        st.none(), any_text, st.integers(-5, 400).map(str), st.sampled_from(["", " 3", "0x10"])
    ),
    chunked=st.booleans(),
    terminated=st.booleans(),
    cap=st.integers(0, 256),
)
def test_read_wsgi_body_returns_a_prefix_or_rejects(
    body: bytes, content_length: str | None, chunked: bool, terminated: bool, cap: int
) -> None:
    """read_wsgi_body returns at most cap bytes or a Rejected, never reading past cap + 1."""
    stream = io.BytesIO(body)
    environ: dict[str, Any] = {"wsgi.input": stream}
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    if terminated:
        environ["wsgi.input_terminated"] = True
    try:
        got = read_wsgi_body(environ, cap)
    except Rejected:
        assert stream.tell() <= cap + 1
        return
    assert len(got) <= cap
    assert body.startswith(got)
    assert stream.tell() <= cap + 1
