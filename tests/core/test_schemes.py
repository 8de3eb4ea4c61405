"""webhook_guard.core.schemes: published vectors, and every preset's ways to refuse a request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from typing import Any

import pytest

from webhook_guard.core.headers import Headers
from webhook_guard.core.schemes import (
    PRESETS,
    HmacScheme,
    StandardWebhooksScheme,
    StripeScheme,
    Verified,
    get_scheme,
)
from webhook_guard.exceptions import (
    ConfigurationError,
    MalformedSignature,
    MalformedTimestamp,
    MissingSignature,
    MissingTimestamp,
    Rejected,
    SignatureMismatch,
    TimestampOutOfTolerance,
)
from webhook_guard.testing import FrozenClock, sign_request

PRESET_NAMES = sorted(PRESETS)
TIMESTAMPED = ("slack", "standard", "stripe")
UNTIMESTAMPED = tuple(name for name in PRESET_NAMES if name not in TIMESTAMPED)
NOW = 1_700_000_000
BODY = b'{"id": "evt_42", "type": "order.paid", "event": "order.paid"}'
NON_UTF8_BODY = b"\xff\xfe\x00binary \xc3(\x80 not utf-8"


def _fields(verified: Verified) -> tuple[object, ...]:
    """Verified's public fields (its body-derived ones are worked out lazily)."""
    return (verified.delivery_key, verified.event_type, verified.timestamp, verified.secret_index)


def secret_for(preset: str, n: int = 0) -> str:
    """A distinctive secret in the form the preset's senders hand out."""
    if preset == "standard":
        return "whsec_" + base64.b64encode(f"standard-key-{n}-Qx7v".encode()).decode()
    if preset == "stripe":
        return f"whsec_stripe-secret-{n}-Qx7v"
    return f"{preset}-secret-{n}-Qx7v"


def keys_for(preset: str, *ns: int) -> list[bytes]:
    scheme = get_scheme(preset)
    return [scheme.key_for(secret_for(preset, n)) for n in ns]


def signed(preset: str, body: bytes = BODY, *, n: int = 0, at: int = NOW) -> dict[str, str]:
    return sign_request(
        preset, secret_for(preset, n), body, timestamp=at, msg_id="msg_42", event="order.paid"
    )


# Every secret any test here configures: none may ever show up in an error.
KNOWN_SECRETS = [secret_for(p, n) for p in PRESET_NAMES for n in range(3)] + [
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_test_secret",
    "8f742231b10e8888abcd99yyyzzz85a5",
    "It's a Secret to Everybody",
    "acme-secret-Qx7v",
]


def assert_secret_free(error: BaseException, secrets: Iterable[str] = KNOWN_SECRETS) -> None:
    """Neither the message nor the hint holds a secret, its key text, or a digest-like run."""
    texts = [str(error), getattr(error, "hint", "")]
    for text in texts:
        for secret in filter(None, secrets):
            assert secret not in text
            if secret.startswith("whsec_") and secret != "whsec_":
                assert secret[len("whsec_") :] not in text
        assert not re.search(r"[0-9a-fA-F]{32}", text), text


def rejects(
    scheme: HmacScheme | str,
    headers: Any,
    body: bytes,
    keys: list[bytes],
    now: float,
    error: type[Rejected],
) -> Rejected:
    with pytest.raises(error) as caught:
        get_scheme(scheme).verify(Headers(headers), body, keys, now)
    assert_secret_free(caught.value)
    return caught.value


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


def with_timestamp(preset: str, headers: dict[str, str], value: str | None) -> dict[str, str]:
    """The headers with the signed timestamp replaced, or removed when ``value`` is None."""
    if preset == "stripe":
        items = [i for i in headers["Stripe-Signature"].split(",") if not i.startswith("t=")]
        if value is not None:
            items.insert(0, f"t={value}")
        return {**headers, "Stripe-Signature": ",".join(items)}
    name = get_scheme(preset).timestamp_header
    assert name is not None
    return without(headers, name) if value is None else {**headers, name: value}


# -- published vectors ---------------------------------------------------------------------

OCTOKIT_HEARTS = (
    r'{"foo":"Foo\n\u001B[34mbar: ' + "♥" * 8 + r'\nthis-is-lost\u001B[0m\u001B[2K"}'
).encode("utf-8")
OCTOKIT_BACKSLASHES = rb'{"foo":"\\u001b"}'
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmi"
    b"bIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TS = 1614265330
STANDARD_BODY = b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
STANDARD_NEGATIVE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
STANDARD_DECOYS = (
    "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
)
STRIPE_BODY = b'{"id":"evt_1","object":"event"}'
STRIPE_SIGNATURE = (
    "t=1492774577,v1=654b43d3508ecadb3f8cefc4bc7d3d2bdc5ba9e03bf2c89b2d0657a8e24e4543"
)

# (preset, secret, body, clock time, the headers as published)
VECTORS = [
    pytest.param(
        "github",
        "It's a Secret to Everybody",
        b"Hello, World!",
        NOW,
        {
            "X-Hub-Signature-256": (
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
            )
        },
        id="github-docs",
    ),
    pytest.param(
        "github",
        "mysecret",
        b'{"foo":"bar"}',
        NOW,
        {
            "X-Hub-Signature-256": (
                "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"
            )
        },
        id="octokit-foo-bar",
    ),
    pytest.param(
        "github",
        "development",
        OCTOKIT_HEARTS,
        NOW,
        {
            "X-Hub-Signature-256": (
                "sha256=afecc3caa27548bb90d51a50384cb2868b9a3327b4ad6a01c9bd4ed0f8b0b12c"
            )
        },
        id="octokit-utf8-escapes",
    ),
    pytest.param(
        "github",
        "development",
        OCTOKIT_BACKSLASHES,
        NOW,
        {
            "X-Hub-Signature-256": (
                "sha256=6f8326efbacfbd04e870cea25b5652e635be8c9807f2fd5348ef60753c9e96ed"
            )
        },
        id="octokit-double-backslash",
    ),
    pytest.param(
        "standard",
        STANDARD_SECRET,
        STANDARD_BODY,
        STANDARD_TS,
        {
            "webhook-id": STANDARD_ID,
            "webhook-timestamp": str(STANDARD_TS),
            "webhook-signature": STANDARD_SIGNATURE,
        },
        id="standard-webhooks",
    ),
    pytest.param(
        "slack",
        "8f742231b10e8888abcd99yyyzzz85a5",
        SLACK_BODY,
        1531420618,
        {
            "X-Slack-Request-Timestamp": "1531420618",
            "X-Slack-Signature": (
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
            ),
        },
        id="slack-docs",
    ),
    pytest.param(
        "shopify",
        "test_secret_key",
        b'{"foo": "bar"}',
        NOW,
        {"X-Shopify-Hmac-Sha256": "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="},
        id="shopify-api-js",
    ),
    pytest.param(
        "stripe",
        "whsec_test_secret",
        STRIPE_BODY,
        1492774577,
        {"Stripe-Signature": STRIPE_SIGNATURE},
        id="stripe-derived",
    ),
]


@pytest.mark.parametrize(("preset", "secret", "body", "now", "headers"), VECTORS)
def test_published_vector_verifies(
    preset: str, secret: str, body: bytes, now: int, headers: dict[str, str]
) -> None:
    """Each published (secret, body, signature) triple verifies over the raw bytes."""
    scheme = get_scheme(preset)
    clock = FrozenClock(now)
    verified = scheme.verify(Headers(headers), body, [scheme.key_for(secret)], now=clock())
    assert verified.secret_index == 0


@pytest.mark.parametrize(("preset", "secret", "body", "now", "headers"), VECTORS)
def test_sign_request_reproduces_published_vector(
    preset: str, secret: str, body: bytes, now: int, headers: dict[str, str]
) -> None:
    """sign_request produces the exact published signature header for each vector."""
    scheme = get_scheme(preset)
    msg_id = headers.get("webhook-id")
    ours = sign_request(preset, secret, body, timestamp=now, msg_id=msg_id)
    assert ours[scheme.signature_header] == headers[scheme.signature_header]


def test_octokit_heart_payload_is_escaped_json_text() -> None:
    """The octokit payload holds literal \\u001B and \\n escapes and the hearts as UTF-8 bytes."""
    assert OCTOKIT_HEARTS.count(b"\\u001B") == 3
    assert OCTOKIT_HEARTS.count(b"\\n") == 2
    assert b"\n" not in OCTOKIT_HEARTS and b"\x1b" not in OCTOKIT_HEARTS
    assert OCTOKIT_HEARTS.count("♥".encode()) == 8
    digest = hmac.new(b"development", OCTOKIT_HEARTS, hashlib.sha256).hexdigest()
    assert digest == "afecc3caa27548bb90d51a50384cb2868b9a3327b4ad6a01c9bd4ed0f8b0b12c"
    assert OCTOKIT_BACKSLASHES.count(b"\\") == 2


def test_octokit_payload_reserialized_no_longer_verifies() -> None:
    """The same JSON value re-serialized (lowercase \\u001b, as JSON.stringify writes it) fails."""
    value = json.loads(OCTOKIT_HEARTS)
    reserialized = json.dumps(value, separators=(",", ":")).encode()
    assert json.loads(reserialized) == value and reserialized != OCTOKIT_HEARTS
    headers = {
        "X-Hub-Signature-256": (
            "sha256=afecc3caa27548bb90d51a50384cb2868b9a3327b4ad6a01c9bd4ed0f8b0b12c"
        )
    }
    rejects("github", headers, reserialized, [b"development"], NOW, SignatureMismatch)


def test_github_delivery_key_is_the_body_digest_not_the_unsigned_ids() -> None:
    """GitHub's ids are unsigned: the key is the body's sha256 whatever they say; event and
    sender id from the headers."""
    headers = {
        "X-Hub-Signature-256": (
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        ),
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Event": "push",
    }
    scheme = get_scheme("github")
    key = scheme.key_for("It's a Secret to Everybody")
    verified = scheme.verify(Headers(headers), b"Hello, World!", [key], NOW)
    digest = "sha256:" + hashlib.sha256(b"Hello, World!").hexdigest()
    assert verified.delivery_key == digest
    assert verified.sender_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert verified.event_type == "push"
    assert verified.timestamp is None
    for forged in (
        without(headers, "X-GitHub-Hook-ID"),
        without(headers, "X-GitHub-Delivery"),
        {**headers, "X-GitHub-Delivery": "forged", "X-GitHub-Hook-ID": "1"},
    ):
        assert scheme.verify(Headers(forged), b"Hello, World!", [key], NOW).delivery_key == digest


def standard_headers(signature: str, *, prefix: str = "webhook-") -> dict[str, str]:
    return {
        prefix + "id": STANDARD_ID,
        prefix + "timestamp": str(STANDARD_TS),
        prefix + "signature": signature,
    }


def test_standard_vector_reports_id_and_timestamp() -> None:
    """The Standard Webhooks vector yields webhook-id as delivery key and the signed timestamp."""
    scheme = StandardWebhooksScheme()
    key = scheme.key_for(STANDARD_SECRET)
    verified = scheme.verify(
        Headers(standard_headers(STANDARD_SIGNATURE)), STANDARD_BODY, [key], STANDARD_TS
    )
    assert _fields(verified) == (STANDARD_ID, None, STANDARD_TS, 0)


def test_standard_vector_with_svix_header_names() -> None:
    """The svix-id, svix-timestamp and svix-signature names carry the same vector."""
    scheme = StandardWebhooksScheme()
    headers = standard_headers(STANDARD_SIGNATURE, prefix="svix-")
    verified = scheme.verify(
        Headers(headers), STANDARD_BODY, [scheme.key_for(STANDARD_SECRET)], STANDARD_TS
    )
    assert verified.delivery_key == STANDARD_ID


def test_standard_negative_vector_is_a_mismatch() -> None:
    """The published negative (last base64 digit changed) fails with SignatureMismatch."""
    key = StandardWebhooksScheme().key_for(STANDARD_SECRET)
    for prefix in ("webhook-", "svix-"):
        headers = standard_headers(STANDARD_NEGATIVE, prefix=prefix)
        rejects("standard", headers, STANDARD_BODY, [key], STANDARD_TS, SignatureMismatch)


@pytest.mark.parametrize(
    "entries",
    [
        [*STANDARD_DECOYS, STANDARD_SIGNATURE, STANDARD_DECOYS[0]],
        [STANDARD_SIGNATURE, *STANDARD_DECOYS],
        ["v1a,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", *STANDARD_DECOYS, STANDARD_SIGNATURE],
    ],
    ids=["published-order", "valid-first", "with-v1a"],
)
def test_standard_multi_signature_with_decoys_passes(entries: list[str]) -> None:
    """A webhook-signature list with the published decoys passes if one v1 entry is valid."""
    scheme = StandardWebhooksScheme()
    headers = standard_headers(" ".join(entries))
    verified = scheme.verify(
        Headers(headers), STANDARD_BODY, [scheme.key_for(STANDARD_SECRET)], STANDARD_TS
    )
    assert verified.delivery_key == STANDARD_ID


def test_standard_decoys_alone_are_a_mismatch() -> None:
    """The decoys without the valid entry fail: a v2 label never counts as v1."""
    key = StandardWebhooksScheme().key_for(STANDARD_SECRET)
    headers = standard_headers(" ".join(STANDARD_DECOYS))
    rejects("standard", headers, STANDARD_BODY, [key], STANDARD_TS, SignatureMismatch)
    relabelled = standard_headers(STANDARD_SIGNATURE.replace("v1,", "v2,"))
    rejects("standard", relabelled, STANDARD_BODY, [key], STANDARD_TS, MalformedSignature)


def test_standard_without_webhook_id_is_malformed() -> None:
    """Standard Webhooks without webhook-id is refused: the id is part of the signed message."""
    key = StandardWebhooksScheme().key_for(STANDARD_SECRET)
    headers = without(standard_headers(STANDARD_SIGNATURE), "webhook-id")
    rejects("standard", headers, STANDARD_BODY, [key], STANDARD_TS, MalformedSignature)


def test_slack_vector_needs_the_fixed_clock() -> None:
    """The Slack vector verifies at 1531420618 and is stale five minutes and a second later."""
    scheme = get_scheme("slack")
    headers = {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    }
    key = scheme.key_for("8f742231b10e8888abcd99yyyzzz85a5")
    clock = FrozenClock(1531420618)
    assert scheme.verify(Headers(headers), SLACK_BODY, [key], clock()).timestamp == 1531420618
    clock.advance(301)
    error = rejects("slack", headers, SLACK_BODY, [key], clock(), TimestampOutOfTolerance)
    assert "in the past" in error.hint


def test_shopify_vector_reports_webhook_id_and_topic() -> None:
    """Shopify's unsigned X-Shopify-Webhook-Id is the sender id, not the key (the body's
    sha256); its event is X-Shopify-Topic (the body names none)."""
    scheme = get_scheme("shopify")
    headers = {
        "X-Shopify-Hmac-Sha256": "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "X-Shopify-Topic": "orders/create",
    }
    verified = scheme.verify(
        Headers(headers), b'{"foo": "bar"}', [scheme.key_for("test_secret_key")], NOW
    )
    assert verified.delivery_key == "sha256:" + hashlib.sha256(b'{"foo": "bar"}').hexdigest()
    assert verified.sender_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert verified.event_type == "orders/create"


def test_stripe_vector_takes_delivery_key_from_body() -> None:
    """The derived Stripe vector verifies; its delivery key is the body's id, it has no type."""
    scheme = StripeScheme()
    key = scheme.key_for("whsec_test_secret")
    verified = scheme.verify(
        Headers({"Stripe-Signature": STRIPE_SIGNATURE}), STRIPE_BODY, [key], 1492774577
    )
    assert _fields(verified) == ("evt_1", None, 1492774577, 0)


def test_stripe_event_type_comes_from_body_type() -> None:
    """Stripe's event type is the verified body's "type" field."""
    body = b'{"id":"evt_2","object":"event","type":"charge.succeeded"}'
    headers = sign_request("stripe", "whsec_test_secret", body, timestamp=NOW)
    scheme = StripeScheme()
    verified = scheme.verify(Headers(headers), body, [scheme.key_for("whsec_test_secret")], NOW)
    assert (verified.delivery_key, verified.event_type) == ("evt_2", "charge.succeeded")


def test_stripe_key_is_the_whole_whsec_string() -> None:
    """Stripe's key is the whole whsec_ string as UTF-8, not a base64 decode (stripe-python)."""
    assert StripeScheme().key_for("whsec_test_secret") == b"whsec_test_secret"


def test_stripe_accepts_any_of_several_v1_and_ignores_v0() -> None:
    """A Stripe-Signature with a stale v1 (Stripe rolling its secret) and a v0 still verifies."""
    header = f"t=1492774577,v1={'00' * 32},v0={'11' * 32},{STRIPE_SIGNATURE.split(',')[1]}"
    scheme = StripeScheme()
    key = scheme.key_for("whsec_test_secret")
    assert scheme.verify(Headers({"Stripe-Signature": header}), STRIPE_BODY, [key], 1492774577)


def test_cloudaipilot_signature_is_sha256_hex_of_raw_body() -> None:
    """CloudAIPilot signs X-CloudAIPilot-Signature: sha256=<64 hex>, the HMAC of the raw body."""
    secret = secret_for("cloudaipilot")
    headers = sign_request("cloudaipilot", secret, BODY, msg_id="dlv_1", event="order.paid")
    value = headers["X-CloudAIPilot-Signature"]
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", value)
    assert value == "sha256=" + hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers["X-CloudAIPilot-Delivery"] == "dlv_1"
    assert headers["X-CloudAIPilot-Event"] == "order.paid"


def test_cloudaipilot_delivery_header_is_the_sender_id_not_the_key() -> None:
    """X-CloudAIPilot-Delivery is unsigned: it is shown as the sender id, and the key is the
    body's sha256 with it, without it or with any other value."""
    headers = signed("cloudaipilot")
    scheme = get_scheme("cloudaipilot")
    verified = scheme.verify(Headers(headers), BODY, keys_for("cloudaipilot", 0), NOW)
    digest = "sha256:" + hashlib.sha256(BODY).hexdigest()
    assert (verified.delivery_key, verified.sender_id) == (digest, "msg_42")
    assert verified.event_type == "order.paid"
    for forged in (
        without(headers, "X-CloudAIPilot-Delivery"),
        {**headers, "X-CloudAIPilot-Delivery": "msg_43"},
    ):
        again = scheme.verify(Headers(forged), BODY, keys_for("cloudaipilot", 0), NOW)
        assert again.delivery_key == digest


def test_cloudaipilot_delivery_key_falls_back_to_body_sha256() -> None:
    """Without X-CloudAIPilot-Delivery the key is sha256:<hex of the raw body>; event from body."""
    headers = without(
        without(signed("cloudaipilot"), "X-CloudAIPilot-Delivery"), "X-CloudAIPilot-Event"
    )
    verified = get_scheme("cloudaipilot").verify(
        Headers(headers), BODY, keys_for("cloudaipilot", 0), NOW
    )
    assert verified.delivery_key == "sha256:" + hashlib.sha256(BODY).hexdigest()
    assert verified.event_type == "order.paid"


# -- every preset ----------------------------------------------------------------------------


@pytest.fixture(params=PRESET_NAMES)
def preset(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_signed_request_verifies(preset: str) -> None:
    """A request signed by sign_request verifies under the same secret."""
    verified = get_scheme(preset).verify(Headers(signed(preset)), BODY, keys_for(preset, 0), NOW)
    assert verified.secret_index == 0
    assert verified.timestamp == (NOW if preset in TIMESTAMPED else None)


def test_tampered_body_is_a_mismatch(preset: str) -> None:
    """One byte changed, added or removed in the body gives SignatureMismatch."""
    headers = signed(preset)
    for tampered in (BODY.replace(b"42", b"43"), BODY + b" ", BODY[:-1], b""):
        rejects(preset, headers, tampered, keys_for(preset, 0), NOW, SignatureMismatch)


def test_wrong_secret_is_a_mismatch(preset: str) -> None:
    """A request signed with another secret gives SignatureMismatch."""
    rejects(preset, signed(preset, n=2), BODY, keys_for(preset, 0, 1), NOW, SignatureMismatch)


def test_no_configured_key_is_a_mismatch(preset: str) -> None:
    """With no key at all, nothing verifies."""
    rejects(preset, signed(preset), BODY, [], NOW, SignatureMismatch)


@pytest.mark.parametrize("signer", [0, 1])
def test_rotation_accepts_old_and_new_secret(preset: str, signer: int) -> None:
    """With old and new secrets configured, either one passes; secret_index says which matched."""
    verified = get_scheme(preset).verify(
        Headers(signed(preset, n=signer)), BODY, keys_for(preset, 0, 1), NOW
    )
    assert verified.secret_index == signer


@pytest.mark.parametrize("preset", TIMESTAMPED)
@pytest.mark.parametrize(("offset", "direction"), [(1, "in the past"), (-1, "in the future")])
def test_timestamp_beyond_tolerance_is_refused(preset: str, offset: int, direction: str) -> None:
    """A timestamp one second beyond the tolerance, either way, is refused with its direction."""
    scheme = get_scheme(preset)
    clock = FrozenClock(NOW)
    clock.advance(offset * (scheme.tolerance + 1))
    error = rejects(
        preset, signed(preset), BODY, keys_for(preset, 0), clock(), TimestampOutOfTolerance
    )
    assert direction in error.hint
    assert error.status == 401


@pytest.mark.parametrize("preset", TIMESTAMPED)
@pytest.mark.parametrize("sign", [1, -1])
def test_timestamp_exactly_at_tolerance_passes(preset: str, sign: int) -> None:
    """A timestamp exactly tolerance seconds away, either way, still passes."""
    scheme = get_scheme(preset)
    clock = FrozenClock(NOW + sign * scheme.tolerance)
    assert scheme.verify(Headers(signed(preset)), BODY, keys_for(preset, 0), clock())


@pytest.mark.parametrize("preset", TIMESTAMPED)
def test_tolerance_is_configurable(preset: str) -> None:
    """A preset built with tolerance=10 refuses a request 11 seconds old."""
    scheme = get_scheme(preset, tolerance=10)
    assert scheme.tolerance == 10
    scheme.verify(Headers(signed(preset)), BODY, keys_for(preset, 0), NOW + 10)
    with pytest.raises(TimestampOutOfTolerance):
        scheme.verify(Headers(signed(preset)), BODY, keys_for(preset, 0), NOW + 11)


@pytest.mark.parametrize("preset", UNTIMESTAMPED)
def test_schemes_without_timestamp_ignore_age(preset: str) -> None:
    """Schemes that sign no timestamp leave replay protection to dedupe: age is not checked."""
    clock = FrozenClock(NOW)
    clock.advance(30 * 24 * 3600)
    verified = get_scheme(preset).verify(
        Headers(signed(preset)), BODY, keys_for(preset, 0), clock()
    )
    assert verified.timestamp is None


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_missing_signature_header(preset: str, blank: str | None) -> None:
    """An absent or blank signature header gives MissingSignature (400)."""
    name = get_scheme(preset).signature_header
    headers = without(signed(preset), name)
    if blank is not None:
        headers[name] = blank
    error = rejects(preset, headers, BODY, keys_for(preset, 0), NOW, MissingSignature)
    assert error.status == 400 and error.code == "missing_signature"


@pytest.mark.parametrize("preset", TIMESTAMPED)
@pytest.mark.parametrize("blank", [None, ""])
def test_missing_timestamp(preset: str, blank: str | None) -> None:
    """A scheme that signs a timestamp refuses a request without one with MissingTimestamp."""
    headers = with_timestamp(preset, signed(preset), blank)
    rejects(preset, headers, BODY, keys_for(preset, 0), NOW, MissingTimestamp)


@pytest.mark.parametrize("preset", TIMESTAMPED)
@pytest.mark.parametrize("value", ["soon", "-5", "1e9", "1700000000.5", "12345678901234", "١٧"])
def test_malformed_timestamp(preset: str, value: str) -> None:
    """A timestamp that is not plain Unix seconds gives MalformedTimestamp."""
    headers = with_timestamp(preset, signed(preset), value)
    rejects(preset, headers, BODY, keys_for(preset, 0), NOW, MalformedTimestamp)


HEX_32 = "ab" * 32
B64_32 = base64.b64encode(bytes(range(32))).decode()
B64_20 = base64.b64encode(bytes(20)).decode()
MALFORMED = {
    "cloudaipilot": [
        "sha256=" + "zz" * 32,
        "sha256=" + "ab" * 31,
        "sha256=" + HEX_32 + "a",
        "sha1=" + HEX_32,
        HEX_32,
        "sha256=" + B64_32,
    ],
    "github": [
        "sha256=" + "zz" * 32,
        "sha256=" + "ab" * 31,
        "sha256=" + HEX_32 + "ab",
        "sha1=" + HEX_32,
        HEX_32,
    ],
    "slack": ["v0=" + "zz" * 32, "v0=" + "ab" * 20, "v1=" + HEX_32, HEX_32, "v0=" + B64_32],
    "shopify": ["not base64!", B64_20, "sha256=" + B64_32, HEX_32, B64_32[:-1]],
    "standard": [
        "v1,not-base64!",
        "v1," + B64_20,
        "v2," + B64_32,
        "v1a," + B64_32,
        B64_32,
        "v1," + HEX_32,
    ],
    "stripe": [
        "t={t},v1=" + "zz" * 32,
        "t={t},v1=" + "ab" * 31,
        "t={t},v0=" + HEX_32,
        "t={t},v1",
        "t={t},sha256=" + HEX_32,
        "t={t};v1=" + HEX_32,
    ],
}
MALFORMED_CASES = [
    pytest.param(name, value, id=f"{name}-{i}")
    for name, values in MALFORMED.items()
    for i, value in enumerate(values)
]


def test_malformed_table_covers_every_preset() -> None:
    """The table of malformed signatures has entries for every preset."""
    assert sorted(MALFORMED) == PRESET_NAMES


@pytest.mark.parametrize(("preset", "value"), MALFORMED_CASES)
def test_malformed_signature(preset: str, value: str) -> None:
    """A non-hex/non-base64, wrong-length or wrong-prefix signature gives MalformedSignature."""
    headers = signed(preset)
    headers[get_scheme(preset).signature_header] = value.format(t=NOW)
    error = rejects(preset, headers, BODY, keys_for(preset, 0), NOW, MalformedSignature)
    assert error.status == 400 and error.code == "malformed_signature"


def test_repeated_header_with_different_values_is_malformed(preset: str) -> None:
    """Any header the scheme reads, sent twice with different values, gives MalformedSignature."""
    headers = signed(preset)
    for name, value in headers.items():
        if name == "Content-Type":
            continue
        pairs = [*headers.items(), (name.lower(), value + "0")]
        rejects(preset, pairs, BODY, keys_for(preset, 0), NOW, MalformedSignature)


def test_repeated_header_with_same_value_passes(preset: str) -> None:
    """A header repeated with an identical value (a proxy copying it) is harmless."""
    headers = signed(preset)
    pairs = [*headers.items(), *((k.upper(), v) for k, v in headers.items())]
    assert get_scheme(preset).verify(Headers(pairs), BODY, keys_for(preset, 0), NOW)


def test_header_names_are_case_insensitive(preset: str) -> None:
    """Header names match whatever their case on the wire."""
    headers = {k.lower(): v for k, v in signed(preset).items()}
    assert get_scheme(preset).verify(Headers(headers), BODY, keys_for(preset, 0), NOW)


def test_non_utf8_body_verifies(preset: str) -> None:
    """A body that is not UTF-8 verifies when signed correctly: bytes are never decoded."""
    headers = signed(preset, NON_UTF8_BODY)
    verified = get_scheme(preset).verify(Headers(headers), NON_UTF8_BODY, keys_for(preset, 0), NOW)
    assert verified.secret_index == 0


def test_deeply_nested_json_body_verifies(preset: str) -> None:
    """A pathologically nested JSON body verifies; sniffing its id/type never crashes."""
    body = b'{"type": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    verified = get_scheme(preset).verify(
        Headers(signed(preset, body)), body, keys_for(preset, 0), NOW
    )
    assert verified.secret_index == 0


# -- secrets and configuration --------------------------------------------------------------


@pytest.mark.parametrize("secret", ["whsec_not base64!!", "whsec_", "not base64 either!!"])
def test_standard_bad_secret_is_a_configuration_error(secret: str) -> None:
    """A Standard Webhooks secret that is not whsec_<base64> is refused without echoing it."""
    with pytest.raises(ConfigurationError) as caught:
        StandardWebhooksScheme().key_for(secret)
    assert_secret_free(caught.value, [secret, secret.removeprefix("whsec_")])


def test_standard_key_is_the_decoded_base64() -> None:
    """Standard Webhooks' key is the base64 after whsec_ (the prefix itself is optional)."""
    scheme = StandardWebhooksScheme()
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert len(key) == 24
    assert scheme.key_for(STANDARD_SECRET) == key
    assert scheme.key_for("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == key


@pytest.mark.parametrize("secret", ["", None, b"bytes-secret"])
def test_empty_or_non_string_secret_is_refused(preset: str, secret: Any) -> None:
    """An empty or non-string secret is a ConfigurationError naming the scheme."""
    with pytest.raises(ConfigurationError, match=preset):
        get_scheme(preset).key_for(secret)


def test_unknown_scheme_name_lists_the_presets() -> None:
    """get_scheme with an unknown name raises ConfigurationError naming the choices."""
    with pytest.raises(ConfigurationError) as caught:
        get_scheme("gitlab")
    for name in PRESET_NAMES:
        assert name in str(caught.value)


def test_get_scheme_passes_scheme_objects_through() -> None:
    """get_scheme returns an HmacScheme it is given unchanged."""
    scheme = get_scheme("github")
    assert get_scheme(scheme) is scheme


def test_every_preset_is_named_after_its_key(preset: str) -> None:
    """Each preset reports its PRESETS name, which logs and history show."""
    assert get_scheme(preset).name == preset
    assert preset in repr(get_scheme(preset))


# -- custom schemes ----------------------------------------------------------------------------


def acme(**overrides: Any) -> HmacScheme:
    settings: dict[str, Any] = {
        "signature_header": "X-Acme-Signature",
        "prefix": "hmac-sha256=",
        "encoding": "base64",
        "template": "{id}:{timestamp}:{body}",
        "timestamp_header": "X-Acme-Timestamp",
        "tolerance": 60,
        "id_header": "X-Acme-Id",
        "event_header": "X-Acme-Event",
        "event_fields": ("kind",),
    }
    return HmacScheme("acme", **{**settings, **overrides})


def test_custom_scheme_round_trip() -> None:
    """A custom scheme verifies what it signs and reports id, event and timestamp."""
    scheme = acme()
    headers = sign_request(scheme, "acme-secret-Qx7v", BODY, timestamp=NOW, msg_id="a-1", event="e")
    assert re.fullmatch(r"hmac-sha256=[A-Za-z0-9+/]{43}=", headers["X-Acme-Signature"])
    verified = scheme.verify(Headers(headers), BODY, [scheme.key_for("acme-secret-Qx7v")], NOW)
    assert _fields(verified) == ("a-1", "e", NOW, 0)


def test_custom_scheme_signs_its_template() -> None:
    """The custom scheme's MAC covers exactly "<id>:<timestamp>:<body>"."""
    scheme = acme(encoding="hex", prefix="")
    headers = sign_request(scheme, "acme-secret-Qx7v", BODY, timestamp=NOW, msg_id="a-1")
    message = b"a-1:%d:" % NOW + BODY
    expected = hmac.new(b"acme-secret-Qx7v", message, hashlib.sha256).hexdigest()
    assert headers["X-Acme-Signature"] == expected


def test_custom_scheme_event_falls_back_to_body_field() -> None:
    """Without the event header, the event type comes from the body's configured field."""
    scheme = acme()
    body = b'{"kind": "invoice.sent"}'
    headers = sign_request(scheme, "acme-secret-Qx7v", body, timestamp=NOW, msg_id="a-2")
    verified = scheme.verify(Headers(headers), body, [scheme.key_for("acme-secret-Qx7v")], NOW)
    assert verified.event_type == "invoice.sent"


def test_custom_scheme_checks_its_tolerance() -> None:
    """A custom scheme refuses a timestamp beyond its own tolerance."""
    scheme = acme()
    headers = sign_request(scheme, "acme-secret-Qx7v", BODY, timestamp=NOW, msg_id="a-3")
    rejects(scheme, headers, BODY, [b"acme-secret-Qx7v"], NOW + 61, TimestampOutOfTolerance)


def test_minimal_custom_scheme_round_trip() -> None:
    """A custom scheme with only a header name signs the body in hex and verifies it."""
    scheme = HmacScheme(signature_header="X-Sig")
    headers = sign_request(scheme, "acme-secret-Qx7v", BODY)
    assert headers["X-Sig"] == hmac.new(b"acme-secret-Qx7v", BODY, hashlib.sha256).hexdigest()
    verified = scheme.verify(Headers(headers), BODY, [b"acme-secret-Qx7v"], NOW)
    assert _fields(verified) == (None, None, None, 0)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"template": "{body}.{timestamp}"}, "{body}"),
        ({"template": "{timestamp}.{body}{body}"}, "{body}"),
        ({"template": "{timestamp}"}, "{body}"),
        ({"template": "{nonce}.{body}"}, "nonce"),
        ({"template": "{}.{body}"}, "unknown"),
        ({"template": "{timestamp}.{body}", "timestamp_header": None}, "timestamp_header"),
        ({"template": "{id}.{body}", "id_header": None}, "id_header"),
        ({"template": "{timestamp.{body}"}, "braces"),
        ({"template": "x}{body}"}, "braces"),
        ({"template": "{id[0]}.{body}"}, "braces"),
        ({"template": "{timestamp!r}.{body}"}, "braces"),
        ({"template": "{timestamp:>12}.{body}"}, "braces"),
        ({"encoding": "base32"}, "encoding"),
        ({"tolerance": 0}, "tolerance"),
    ],
)
def test_invalid_custom_scheme_is_a_configuration_error(
    overrides: dict[str, Any], named: str
) -> None:
    """A bad template, encoding or tolerance is refused when the scheme is built, not later."""
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        acme(**overrides)


def test_stripe_template_needs_no_timestamp_header() -> None:
    """Stripe signs {timestamp} read from its signature header, so it needs no timestamp_header."""
    assert StripeScheme().timestamp_header is None


# -- secrets never leak -------------------------------------------------------------------------


def test_rejection_messages_name_the_header(preset: str) -> None:
    """Each refusal's hint names the header at fault so an operator can find it."""
    scheme = get_scheme(preset)
    headers = without(signed(preset), scheme.signature_header)
    error = rejects(preset, headers, BODY, keys_for(preset, 0), NOW, MissingSignature)
    assert scheme.signature_header.lower() in error.hint.lower()
    error = rejects(
        preset, signed(preset), BODY + b"!", keys_for(preset, 0), NOW, SignatureMismatch
    )
    assert scheme.signature_header in error.hint


# -- replay limits: unsigned headers never override signed content ---------------------------

UNSIGNED_ID = ("cloudaipilot", "github", "shopify")


@pytest.mark.parametrize("preset", UNSIGNED_ID)
def test_an_unsigned_id_header_cannot_give_a_captured_request_a_new_key(preset: str) -> None:
    """Dropping or changing the unsigned id header leaves the dedupe key (the body's sha256)
    as it was: a captured request replayed under a new id is still a duplicate."""
    scheme = get_scheme(preset)
    assert scheme.id_header is not None
    headers = signed(preset)
    keys = keys_for(preset, 0)
    first = scheme.verify(Headers(headers), BODY, keys, NOW)
    assert first.sender_id == "msg_42"
    for forged in (without(headers, scheme.id_header), {**headers, scheme.id_header: "msg_43"}):
        again = scheme.verify(Headers(forged), BODY, keys, NOW)
        assert (
            again.delivery_key == first.delivery_key == f"sha256:{hashlib.sha256(BODY).hexdigest()}"
        )


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_forged_event_header_never_beats_the_signed_body(preset: str) -> None:
    """Where the body names its event, a forged event header does not re-route it."""
    scheme = get_scheme(preset)
    headers = signed(preset)
    if scheme.event_header:
        headers = {**headers, scheme.event_header: "admin.delete_everything"}
    verified = scheme.verify(Headers(headers), BODY, keys_for(preset, 0), NOW)
    if scheme.event_fields:
        assert verified.event_type == "order.paid"
    else:  # github and shopify bodies name no event: their header is all there is
        assert verified.event_type == "admin.delete_everything"


def test_cloudaipilot_event_header_only_when_the_body_has_none() -> None:
    """A body without "event" or "type" takes its event type from X-CloudAIPilot-Event."""
    body = b'{"id": "x"}'
    headers = sign_request("cloudaipilot", secret_for("cloudaipilot"), body, event="order.paid")
    verified = get_scheme("cloudaipilot").verify(
        Headers(headers), body, keys_for("cloudaipilot", 0), NOW
    )
    assert verified.event_type == "order.paid"


@pytest.mark.parametrize(
    ("preset", "key"),
    [
        ("standard", "msg_42"),
        ("stripe", "evt_42"),
        ("slack", f"sha256:{hashlib.sha256(BODY).hexdigest()}"),
        ("cloudaipilot", f"sha256:{hashlib.sha256(BODY).hexdigest()}"),
    ],
)
def test_each_preset_dedupes_on_signed_content(preset: str, key: str) -> None:
    """standard: the signed webhook-id; stripe: the body's id; slack: event_id, else the body."""
    verified = get_scheme(preset).verify(Headers(signed(preset)), BODY, keys_for(preset, 0), NOW)
    assert verified.delivery_key == key


def test_slack_dedupes_on_the_bodys_event_id() -> None:
    """An Events API body's event_id is Slack's dedupe key."""
    body = b'{"type": "event_callback", "event_id": "Ev123"}'
    headers = sign_request("slack", secret_for("slack"), body, timestamp=NOW)
    verified = get_scheme("slack").verify(Headers(headers), body, keys_for("slack", 0), NOW)
    assert verified.delivery_key == "Ev123"


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_describes_what_it_signs(preset: str) -> None:
    """describe() names the signature headers, the signed parts (the raw body last), the
    dedupe key, the event source and what a captured request allows."""
    scheme = get_scheme(preset)
    description = scheme.describe()
    assert description.name == preset
    assert scheme.signature_header in description.signature_headers
    assert description.signed == scheme.signed_parts and description.signed[-1] == "raw body"
    assert (description.timestamp is not None) == (preset in TIMESTAMPED)
    replay_is_bounded = "401" in description.replay and "forever" not in description.replay
    assert replay_is_bounded == (preset in TIMESTAMPED)
    assert description.dedupe_key and description.event_type


def test_a_body_timestamp_field_closes_replay_past_the_dedupe_window() -> None:
    """With body_timestamp_field, the description no longer says forever."""
    from webhook_guard.core.schemes import cloudaipilot

    description = cloudaipilot(body_timestamp_field="timestamp").describe()
    assert description.timestamp == "body field 'timestamp'"
    assert "forever" not in description.replay


# -- the optional freshness check on a signed body field -------------------------------------


def _timed(value: object, *, preset: str = "cloudaipilot") -> tuple[HmacScheme, bytes, Any]:
    from webhook_guard.core.schemes import PRESETS as factories

    scheme = factories[preset](body_timestamp_field="timestamp")  # type: ignore[operator]
    body = json.dumps({"event": "order.paid", "timestamp": value}).encode()
    headers = sign_request(scheme, secret_for(preset), body, timestamp=NOW)
    return scheme, body, headers


@pytest.mark.parametrize(
    "value",
    [
        NOW,
        NOW - 299,
        NOW + 299,
        float(NOW) + 0.5,
        str(NOW),
        f"{NOW}.25",
        "2023-11-14T22:13:20Z",
        "2023-11-14T23:13:20+01:00",
    ],
)
def test_a_fresh_body_timestamp_passes(value: object) -> None:
    """Unix seconds (int, float, numeric string) or ISO-8601 with an offset, within tolerance."""
    scheme, body, headers = _timed(value)
    assert scheme.verify(Headers(headers), body, keys_for("cloudaipilot", 0), NOW)


@pytest.mark.parametrize(("value", "direction"), [(NOW - 301, "past"), (NOW + 301, "future")])
def test_a_stale_or_future_body_timestamp_is_out_of_tolerance(value: int, direction: str) -> None:
    """Outside the tolerance, either way: 401 timestamp_out_of_tolerance naming the field."""
    scheme, body, headers = _timed(value)
    error = rejects(
        scheme, headers, body, keys_for("cloudaipilot", 0), NOW, TimestampOutOfTolerance
    )
    assert error.status == 401 and "'timestamp'" in error.hint and direction in error.hint


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        (None, MissingTimestamp),
        ("", MissingTimestamp),
        ("yesterday", MalformedTimestamp),
        (True, MalformedTimestamp),
        ([NOW], MalformedTimestamp),
        ("2023-11-14T22:13:20", MalformedTimestamp),  # no offset: which zone?
        (10**400, MalformedTimestamp),
    ],
)
def test_a_missing_or_malformed_body_timestamp_is_400(
    value: object, error_type: type[Rejected]
) -> None:
    """Missing or malformed: 400 with a hint that names the field."""
    scheme, body, headers = _timed(value)
    error = rejects(scheme, headers, body, keys_for("cloudaipilot", 0), NOW, error_type)
    assert error.status == 400 and "'timestamp'" in error.hint


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_factory_takes_a_body_timestamp_field(preset: str) -> None:
    """Each preset checks the field when asked; a stale one is refused by every preset."""
    scheme, body, headers = _timed(NOW - 1000, preset=preset)
    rejects(scheme, headers, body, keys_for(preset, 0), NOW, TimestampOutOfTolerance)
    fresh_scheme, fresh_body, fresh_headers = _timed(NOW, preset=preset)
    assert fresh_scheme.verify(Headers(fresh_headers), fresh_body, keys_for(preset, 0), NOW)


def test_the_signature_is_checked_before_the_body_timestamp() -> None:
    """A tampered body is a signature mismatch, whatever its timestamp says: only a verified
    body is parsed."""
    scheme, body, headers = _timed(NOW - 1000)
    rejects(scheme, headers, body + b" ", keys_for("cloudaipilot", 0), NOW, SignatureMismatch)
    scheme, body, headers = _timed(NOW)
    rejects(scheme, headers, b"not json", keys_for("cloudaipilot", 0), NOW, SignatureMismatch)


def test_a_body_that_is_not_json_has_no_body_timestamp() -> None:
    """A signed body that is not a JSON object is missing its timestamp field."""
    from webhook_guard.core.schemes import cloudaipilot

    scheme = cloudaipilot(body_timestamp_field="timestamp")
    for body in (b"plain text", b"[1, 2]"):
        headers = sign_request(scheme, secret_for("cloudaipilot"), body)
        rejects(scheme, headers, body, keys_for("cloudaipilot", 0), NOW, MissingTimestamp)


def test_an_empty_body_timestamp_field_is_a_configuration_error() -> None:
    """body_timestamp_field must name a field."""
    from webhook_guard.core.schemes import cloudaipilot

    with pytest.raises(ConfigurationError, match="body_timestamp_field"):
        cloudaipilot(body_timestamp_field=" ")


def test_docs_schemes_table_is_what_the_schemes_describe() -> None:
    """docs/schemes.md holds, per preset, the row describe() gives: the docs cannot drift."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "schemes.md").read_text()
    for name in PRESET_NAMES:
        d = get_scheme(name).describe()
        headers = ", ".join(f"`{h}`" for h in d.signature_headers)
        row = (
            f"| `{d.name}` | {headers} | {' + '.join(d.signed)} | {d.dedupe_key} | "
            f"{d.event_type} | {d.replay} |"
        )
        assert row in docs, row
