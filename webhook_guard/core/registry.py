"""Which Guard serves which endpoint of which store, in this process.

A store (one SQLite file, one broker setup) is shared by every Guard that writes to it, so the
endpoint names on it must be unique: a delivery recorded by endpoint ``orders`` is run only with
the handlers of the Guard named ``orders``. Guards attach here when they are built; a second
live Guard with the same endpoint on the same store is a configuration error, on every engine.
Guards are held weakly: one that is gone frees its name.

Broker engines (Celery, RQ, Dramatiq, arq) share one namespace, ``BROKERS``: their workers look
a delivery's Guard up by its endpoint alone.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import TYPE_CHECKING

from webhook_guard.core.queue import store_key
from webhook_guard.exceptions import ConfigurationError

if TYPE_CHECKING:
    from webhook_guard.core.guard import Guard

__all__ = ["BROKERS", "attach", "detach", "guard_for", "guards_on"]

BROKERS = "brokers"  # the store key every broker-backed queue reports

_lock = threading.Lock()
# store key -> endpoint -> the Guard that serves it
_attached: dict[str, dict[str, weakref.ref[Guard]]] = {}


def attach(guard: Guard) -> None:
    """Record that ``guard`` serves its endpoint on its queue's store.

    Raises ``ConfigurationError`` when another live Guard already serves that endpoint there.
    """
    key = store_key(guard.queue)
    if _held_by_another(key, guard):
        # A Guard only cyclic garbage still holds (an old Flask app of an app-factory test)
        # is no Guard in use: collect before refusing.
        gc.collect()
    with _lock:
        endpoints = _attached.setdefault(key, {})
        held = endpoints.get(guard.endpoint)
        other = held() if held is not None else None
        if other is not None and other is not guard:
            raise ConfigurationError(
                f"two Guards with endpoint {guard.endpoint!r} on one store ({_describe(key)}): "
                "give each Guard its own endpoint= (deliveries are dispatched by endpoint, so "
                "they would run under the other Guard's handlers)"
            )
        endpoints[guard.endpoint] = weakref.ref(guard)


def _held_by_another(key: str, guard: Guard) -> bool:
    with _lock:
        held = _attached.get(key, {}).get(guard.endpoint)
    other = held() if held is not None else None
    return other is not None and other is not guard


def detach(guard: Guard) -> None:
    """Forget ``guard`` (``Guard.close``): its endpoint name is free again."""
    key = store_key(guard.queue)
    with _lock:
        endpoints = _attached.get(key, {})
        held = endpoints.get(guard.endpoint)
        if held is not None and held() is guard:
            del endpoints[guard.endpoint]


def guards_on(key: str) -> dict[str, Guard]:
    """The live Guards attached to the store ``key``, by endpoint."""
    with _lock:
        endpoints = dict(_attached.get(key, {}))
    found = {name: ref() for name, ref in endpoints.items()}
    return {name: guard for name, guard in found.items() if guard is not None}


def guard_for(key: str, endpoint: str) -> Guard | None:
    """The live Guard serving ``endpoint`` on the store ``key``, if any."""
    with _lock:
        held = _attached.get(key, {}).get(endpoint)
    return held() if held is not None else None


def _describe(key: str) -> str:
    return key.split(":", 1)[1] if key.startswith("sqlite:") else key
