"""Hypothesis against every adapter through its real entry point, differentially: whatever a
sender sends (random headers in every preset's format, malformed signatures, random bytes, lying
or absurd Content-Length, repeated headers), every adapter gives the same contract answer, never
a 5xx or a crash."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adapters.test_contract import FACTORIES, SCHEMES, _transport_factory
from tests.contract import PATH, SECRET, contract_guard, scheme_secret
from webhook_guard.core.schemes import get_scheme
from webhook_guard.queues.sqlite import SQLiteQueue

CODES = {
    "missing_signature",
    "malformed_signature",
    "missing_timestamp",
    "malformed_timestamp",
    "incomplete_body",
    "invalid_content_length",
    "length_required",
    "signature_mismatch",
    "timestamp_out_of_tolerance",
    "method_not_allowed",
    "payload_too_large",
}
# What an HTTP server can hand over: latin-1 text without control characters (tab allowed).
header_text = st.text(
    st.characters(max_codepoint=255, blacklist_categories=("Cc",)) | st.just("\t"), max_size=80
)


def _header_names(scheme_name: str) -> list[str]:
    scheme = get_scheme(scheme_name)
    names = [scheme.signature_header, "content-type", "x-random"]
    for name in (scheme.timestamp_header, scheme.id_header, scheme.event_header):
        if name:
            names.append(name)
    if scheme_name == "standard":
        names += ["svix-id", "svix-timestamp", "svix-signature"]
    return names


def _signature_like(scheme_name: str) -> st.SearchStrategy[str]:
    """Values shaped like the preset's signatures, mostly wrong in some way."""
    scheme = get_scheme(scheme_name)
    digest_hex = st.text("0123456789abcdefABCDEF", min_size=0, max_size=70)
    digest_b64 = st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=50
    )
    digest = digest_hex if scheme.encoding == "hex" else digest_b64
    prefixes = st.sampled_from([scheme.prefix, "", "sha256=", "v1,", "v0=", "t=1,v1=", "sha1="])
    one = st.builds(lambda p, d: p + d, prefixes, digest)
    return st.one_of(
        one,
        st.lists(one, max_size=4).map(" ".join),
        st.lists(one, max_size=4).map(",".join),
        header_text,
    )


@st.composite
def requests(draw: st.DrawFn, scheme_name: str) -> tuple[str, list[tuple[str, str]], bytes, bool]:
    names = _header_names(scheme_name)
    raw: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(names))
        value = draw(
            _signature_like(scheme_name)
            if "sig" in name.lower() or "hmac" in name.lower()
            else header_text
        )
        raw.append((name, value))  # the same name may come twice: repeated headers
    body = draw(st.binary(max_size=600) | st.text(max_size=200).map(str.encode))
    if draw(st.booleans()):
        # a correctly signed request, then mangled: body bit-flipped or header repeated
        signed = get_scheme(scheme_name).sign(body, scheme_secret(scheme_name, SECRET))
        raw += list(signed.items())
        if body and draw(st.booleans()):
            body = bytes([body[0] ^ 1]) + body[1:]
    length = draw(
        st.sampled_from([None, "-1", "abc", "99999999999999999999", "0", "5", str(len(body) + 3)])
    )
    if length is not None:
        raw.append(("content-length", length))
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS"]))
    chunked = length is None and draw(st.booleans())
    return method, raw, body, chunked


def _normalized(status: int, body: bytes) -> tuple[int, str]:
    """What must be equal across adapters: the status and the body less the delivery id."""
    payload = json.loads(body)
    if status == 200:
        assert payload["status"] in ("ok", "duplicate")
        return status, payload["status"]
    assert payload["error"] in CODES, payload
    return status, payload["error"]


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_every_adapter_gives_the_same_answer_to_the_same_request(scheme_name: str) -> None:
    """Differential: random and malformed requests get the same status and body from every
    adapter (each on its own store, fed the same sequence), never a 5xx or a crash."""
    directory = Path(tempfile.mkdtemp(prefix="wg-fuzz-"))
    transports = {
        adapter: _transport_factory(adapter)(
            contract_guard(scheme_name, SQLiteQueue(directory / f"{adapter}.db"))
        )
        for adapter in FACTORIES
    }

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests(scheme_name))
    def check(request: tuple[str, list[tuple[str, str]], bytes, bool]) -> None:
        method, raw, body, chunked = request
        answers = {}
        for adapter, transport in transports.items():
            response = transport.request(method, PATH, {}, body, chunked=chunked, raw=raw)
            assert response.status < 500, (adapter, response.status, response.body)
            answers[adapter] = _normalized(response.status, response.body)
        assert len(set(answers.values())) == 1, answers

    check()
