"""Helpers for testing code that receives webhooks: sign a request, freeze the clock.

Public API, used by webhook_guard's own tests and meant for yours::

    from webhook_guard.testing import FrozenClock, sign_request

    clock = FrozenClock(1_700_000_000)
    guard = Guard("whsec_test", scheme="stripe", clock=clock)
    headers = sign_request("stripe", "whsec_test", body, timestamp=int(clock()))
    clock.advance(301)  # now the same request is outside Stripe's 300-second tolerance

This module imports no web framework and no queue engine.
"""

from __future__ import annotations

from webhook_guard.core.schemes import HmacScheme, get_scheme

__all__ = ["DEFAULT_FROZEN_TIME", "FrozenClock", "sign_request"]

# 2023-11-14T22:13:20Z: a round, plainly fake instant, far from any published test vector.
DEFAULT_FROZEN_TIME = 1_700_000_000.0


def sign_request(
    scheme: str | HmacScheme,
    secret: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    msg_id: str | None = None,
    event: str | None = None,
) -> dict[str, str]:
    """The headers a correct sender of ``scheme`` would attach to ``body``.

    Args:
        scheme: a preset name (``"github"``, ``"stripe"``, ...) or an ``HmacScheme``.
        secret: the shared secret, in the form the sender's dashboard shows it.
        body: the exact bytes that will be sent.
        timestamp: Unix seconds to sign, for schemes that sign one; defaults to now. Pass
            ``int(clock())`` when the receiving side uses a ``FrozenClock``.
        msg_id: the delivery id header's value, for schemes that have one; random if omitted.
            It is the dedupe key only where the scheme signs it (``standard``); elsewhere the
            key comes from the body, so two deliveries need two different bodies.
        event: the event type header's value, for schemes that carry one in a header.
    """
    return get_scheme(scheme).sign(body, secret, timestamp=timestamp, msg_id=msg_id, event=event)


class FrozenClock:
    """A clock that stands still until told to move: pass it wherever a ``clock`` is taken.

    Calling it returns the current frozen Unix time; set ``now`` or call ``advance`` to move it.
    """

    __slots__ = ("now",)

    def __init__(self, now: float = DEFAULT_FROZEN_TIME) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock by ``seconds`` (negative goes back) and return the new time."""
        self.now += seconds
        return self.now

    def __repr__(self) -> str:
        return f"FrozenClock({self.now!r})"
