"""webhook_guard.testing: the public helpers users test their own receivers with."""

from __future__ import annotations

import pytest

from webhook_guard.core.headers import Headers
from webhook_guard.core.schemes import PRESETS, HmacScheme, get_scheme
from webhook_guard.exceptions import ConfigurationError
from webhook_guard.testing import DEFAULT_FROZEN_TIME, FrozenClock, sign_request


def test_frozen_clock_stands_still_until_moved() -> None:
    """FrozenClock returns the same time until advanced or set."""
    clock = FrozenClock(100)
    assert clock() == clock() == 100.0
    assert clock.advance(2.5) == 102.5 == clock()
    assert clock.advance(-10) == 92.5
    clock.now = 7
    assert clock() == 7


def test_frozen_clock_default_is_a_fixed_instant() -> None:
    """Without an argument the clock starts at DEFAULT_FROZEN_TIME."""
    assert FrozenClock()() == DEFAULT_FROZEN_TIME
    assert "FrozenClock" in repr(FrozenClock())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sign_request_output_verifies_for_every_preset(preset: str) -> None:
    """sign_request headers verify under the same secret and the frozen time they were signed at."""
    clock = FrozenClock()
    secret = "whsec_dGVzdGluZy1oZWxwZXJz" if preset == "standard" else "testing-helpers"
    body = b'{"hello": "world"}'
    headers = sign_request(preset, secret, body, timestamp=int(clock()), event="ping")
    scheme = get_scheme(preset)
    assert scheme.verify(Headers(headers), body, [scheme.key_for(secret)], clock())


def test_sign_request_takes_a_scheme_object() -> None:
    """sign_request accepts an HmacScheme as well as a preset name."""
    scheme = HmacScheme(signature_header="X-Sig", prefix="v9=")
    assert sign_request(scheme, "k", b"x")["X-Sig"].startswith("v9=")


def test_sign_request_unknown_preset_is_a_configuration_error() -> None:
    """An unknown preset name is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        sign_request("gitlab", "k", b"x")
