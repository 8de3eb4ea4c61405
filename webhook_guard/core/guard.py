"""The Guard: one webhook endpoint's settings, its handlers, and the response contract.

``Guard.receive(method, path, headers, body) -> Outcome`` is the whole of what an adapter
calls: cap -> verify -> build the Delivery -> dedupe + durable enqueue -> 200. Handlers run
later, in the worker, never inside the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from webhook_guard.core import events, outcome, registry
from webhook_guard.core.body import require_post
from webhook_guard.core.config import GuardConfig, WorkerMode, environment_settings
from webhook_guard.core.consumer import embedded_consumer, is_consumable
from webhook_guard.core.delivery import Delivery, new_delivery_id
from webhook_guard.core.headers import Headers, HeadersLike
from webhook_guard.core.queue import ConsumableQueue, Enqueued, Queue, Rejection
from webhook_guard.core.retry import RetryPolicy
from webhook_guard.core.schemes import HmacScheme, Verified, get_scheme
from webhook_guard.core.wiring import open_queue
from webhook_guard.exceptions import (
    ConfigurationError,
    MissingSecret,
    PayloadTooLarge,
    QueueUnavailable,
    Rejected,
)

logger = logging.getLogger("webhook_guard")

Handler = Callable[[Delivery], Any]
H = TypeVar("H", bound=Handler)
Clock = Callable[[], float]
HandlerContext = Callable[[], AbstractContextManager[Any]]
CATCH_ALL = "*"


class _Unset:
    """A keyword argument the caller did not pass (so the environment, then the default,
    decides)."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


class Guard:
    """One webhook endpoint: who may send (scheme + secrets), where deliveries go, who handles them.

    Build it one way: keyword settings, or ``config=`` (a ``GuardConfig``), not both. A setting
    not passed comes from the environment (``WEBHOOK_SECRET``, ``WEBHOOK_SCHEME``,
    ``WEBHOOK_GUARD_QUEUE`` / ``WEBHOOK_GUARD_DB``, ``WEBHOOK_GUARD_WORKER``,
    ``WEBHOOK_GUARD_MAX_BODY_BYTES``, ``WEBHOOK_GUARD_TOLERANCE``,
    ``WEBHOOK_GUARD_LEASE_SECONDS``, ``WEBHOOK_GUARD_HANDLER_TIMEOUT``,
    ``WEBHOOK_GUARD_REQUEST_DEADLINE``), then from the default.

    Args:
        secret: the signing secret, or several (all valid at once while rotating): a list is
            taken as is; a string is split on commas (``split_secrets``), so a secret that
            contains a comma must be passed in a list.
        scheme: a preset name (``cloudaipilot``, ``github``, ``stripe``, ``standard``,
            ``slack``, ``shopify``) or an ``HmacScheme`` (whose own tolerance then applies).
        queue: a ``Queue`` object, a queue URL (``sqlite:////abs/path.db``, ``celery+redis://``,
            ...) or a path; default ``WEBHOOK_GUARD_QUEUE``, ``WEBHOOK_GUARD_DB``, then
            ``./webhook_guard.db``.
        endpoint: the name that scopes dedupe keys, labels the history and routes deliveries
            to this Guard's handlers; unique per store (default ``"default"``).
        max_body_bytes: the cap; larger bodies get 413 and are not read past it (1 MiB).
        tolerance_seconds: how far a signed timestamp may be from now, either way (300 s).
        worker: ``"embedded"`` (default) runs handlers in one consumer thread per web process
            and store, started when the process starts serving; ``"external"`` leaves them to
            ``webhook-guard worker``.
        retry: attempts and backoff for failing handlers (``RetryPolicy()``).
        lease_seconds: how long a worker's claim lasts without a heartbeat (60 s).
        handler_timeout: seconds an attempt's handlers may run (300 s; per handler:
            ``@guard.on(..., timeout=)``); past it the attempt is recorded as timed out and
            retried, and the stuck thread is left behind while the consumer goes on.
        request_deadline: seconds within which every request is answered, counted from when
            the adapter gets it (5 s, half a sender's usual 10 s timeout): a body still
            arriving by then gets 408, a store that cannot take the delivery in time 503 +
            ``Retry-After``.
        clock: returns Unix seconds; inject one in tests.
        insecure_dev_mode: accept unsigned requests. Refused unless set, and logged loudly.
        redact_headers: header-name patterns (substrings, case-insensitive, ``_`` as ``-``)
            never stored, queued or shown, on top of the defaults (key, token, secret, password,
            passwd, session, signature, auth, cookie, credential).
        config: every plain setting at once, instead of the keyword settings above.

    Raises:
        ConfigurationError: conflicting arguments, an invalid setting, or another Guard with the
            same endpoint on the same store.
        MissingSecret: no secret and no ``insecure_dev_mode``.
    """

    def __init__(
        self,
        secret: str | Sequence[str] | None = None,
        *,
        scheme: str | HmacScheme = UNSET,
        queue: Queue | str | None = None,
        endpoint: str = UNSET,
        max_body_bytes: int | None = None,
        tolerance_seconds: float | None = None,
        worker: WorkerMode = UNSET,
        retry: RetryPolicy | None = None,
        lease_seconds: float = UNSET,
        handler_timeout: float = UNSET,
        request_deadline: float = UNSET,
        clock: Clock = time.time,
        insecure_dev_mode: bool = UNSET,
        config: GuardConfig | None = None,
        redact_headers: Sequence[str] | None = None,
    ) -> None:
        given = {
            name: value
            for name, value in (
                ("secret", secret),
                ("scheme", scheme),
                ("endpoint", endpoint),
                ("max_body_bytes", max_body_bytes),
                ("tolerance_seconds", tolerance_seconds),
                ("worker", worker),
                ("retry", retry),
                ("lease_seconds", lease_seconds),
                ("handler_timeout", handler_timeout),
                ("request_deadline", request_deadline),
                ("insecure_dev_mode", insecure_dev_mode),
                ("redact_headers", redact_headers),
            )
            if value is not None and value is not UNSET
        }
        scheme_object = scheme if isinstance(scheme, HmacScheme) else None
        if config is not None:
            if given:
                raise ConfigurationError(
                    f"Guard: pass config= or keyword settings, not both (also got "
                    f"{', '.join(sorted(given))}); put them in the GuardConfig"
                )
            if isinstance(queue, str):
                raise ConfigurationError(
                    "Guard: a queue URL goes in config.queue when config= is given"
                )
            if queue is not None and config.queue is not None:
                raise ConfigurationError(
                    f"Guard: queue= and config.queue ({config.queue!r}) both name a queue; pass one"
                )
        else:
            config = _config_from_arguments(given, queue, scheme_object)
        self.config = config
        if (
            scheme_object is not None
            and config.tolerance_seconds is not None
            and config.tolerance_seconds != scheme_object.tolerance
        ):
            raise ConfigurationError(
                f"Guard: tolerance_seconds={config.tolerance_seconds:g} conflicts with the "
                f"scheme object's tolerance ({scheme_object.tolerance:g} s); build the scheme "
                f"with tolerance={config.tolerance_seconds:g} instead"
            )
        self.scheme = get_scheme(
            scheme_object if scheme_object is not None else config.scheme,
            tolerance=config.tolerance_seconds,
        )
        self._keys = tuple(self.scheme.key_for(s) for s in config.secrets)
        if not self._keys:
            if not config.insecure_dev_mode:
                raise MissingSecret(
                    f"endpoint {config.endpoint!r}: no webhook secret configured. Set the secret "
                    "(e.g. WEBHOOK_SECRET); only for local development pass insecure_dev_mode=True"
                )
            logger.critical(
                "INSECURE: endpoint %r accepts UNSIGNED webhooks (insecure_dev_mode). "
                "Anyone can send it anything. Never run this in production.",
                config.endpoint,
            )
        self.queue: Queue = (
            queue if queue is not None and not isinstance(queue, str) else open_queue(config.queue)
        )
        self.clock = clock
        self._handlers: list[tuple[str, Handler]] = []
        self._timeouts: dict[Handler, float] = {}  # per-handler overrides of handler_timeout
        self._handler_contexts: list[HandlerContext] = []
        # Raises if another Guard holds this endpoint on this store; broker workers find
        # their Guard here by endpoint.
        registry.attach(self)

    def __repr__(self) -> str:
        return f"<Guard endpoint={self.endpoint!r} scheme={self.scheme.name!r}>"

    @property
    def endpoint(self) -> str:
        """This Guard's endpoint name: it scopes dedupe keys and routes deliveries here."""
        return self.config.endpoint

    @property
    def request_deadline(self) -> float:
        """Seconds within which every request is answered (``GuardConfig.request_deadline``)."""
        return self.config.request_deadline

    @property
    def max_body_bytes(self) -> int:
        """The body cap: larger bodies are refused with 413, unread past the cap."""
        return self.config.max_body_bytes

    @property
    def retry_policy(self) -> RetryPolicy:
        """Attempts and backoff for this Guard's failing handlers."""
        return self.config.retry

    # -- handlers ----------------------------------------------------------------------------

    def on(self, *event_types: str, timeout: float | None = None) -> Callable[[H], H]:
        """Register a handler for event types (glob patterns allowed); none means every event.

        ``@guard.on("invoice.paid")``, ``@guard.on("invoice.*", "charge.failed")``, ``@guard.on()``;
        ``timeout=`` overrides the Guard's ``handler_timeout`` for this handler.
        """
        patterns = event_types or (CATCH_ALL,)

        def register(handler: H) -> H:
            self.add_handler(handler, *patterns, timeout=timeout)
            return handler

        return register

    def add_handler(
        self, handler: Handler, *event_types: str, timeout: float | None = None
    ) -> None:
        """Register ``handler`` for ``event_types`` (every event when none is given), with its
        own ``timeout`` in seconds if given."""
        if timeout is not None:
            if timeout <= 0:
                raise ConfigurationError("a handler's timeout must be a positive number of seconds")
            self._timeouts[handler] = float(timeout)
        for pattern in event_types or (CATCH_ALL,):
            self._handlers.append((pattern, handler))

    def attempt_timeout(self, event_type: str | None) -> float:
        """Seconds an attempt at an ``event_type`` delivery may run: the longest timeout of the
        handlers it runs (``handler_timeout`` for those without their own)."""
        default = self.config.handler_timeout
        handlers = self.handlers_for(event_type)
        return max((self._timeouts.get(h, default) for h in handlers), default=default)

    def handlers_for(self, event_type: str | None) -> list[Handler]:
        """The handlers a delivery of ``event_type`` runs, in registration order, each once."""
        found: list[Handler] = []
        for pattern, handler in self._handlers:
            matches = pattern == CATCH_ALL or (
                event_type is not None and fnmatch.fnmatchcase(event_type, pattern)
            )
            if matches and handler not in found:
                found.append(handler)
        return found

    def add_handler_context(self, context: HandlerContext) -> None:
        """Run every handler inside ``context()`` (a context manager factory): how adapters put
        handlers inside their framework (a Flask app context, Django's connection handling)."""
        if context not in self._handler_contexts:
            self._handler_contexts.append(context)

    def dispatch(self, delivery: Delivery) -> int:
        """Run every matching handler on ``delivery`` inside the handler contexts; return how
        many ran. ``async def`` handlers are awaited. Exceptions propagate: the worker turns
        them into a retry or a dead letter."""
        handlers = self.handlers_for(delivery.event_type)
        if not handlers:
            return 0
        with contextlib.ExitStack() as stack:
            for context in self._handler_contexts:
                stack.enter_context(context())
            for handler in handlers:
                result = handler(delivery)
                if inspect.isawaitable(result):
                    asyncio.run(_await(result))
        return len(handlers)

    # -- the request path --------------------------------------------------------------------

    def receive(
        self,
        method: str,
        path: str,
        headers: HeadersLike,
        body: bytes,
        *,
        remote_addr: str | None = None,
    ) -> Outcome:
        """Answer one webhook request: verify, enqueue durably, and say what happened."""
        started = self._received()
        self._start_embedded_worker()
        try:
            delivery = self.admit(method, headers, body)
        except Rejected as error:
            rejection = self._rejection(error, method, path, body, remote_addr)
            _never_crash(self.queue.record_rejection, rejection)
            return outcome.rejected(error)
        try:
            result = self.queue.enqueue(delivery)
        except Exception as error:
            return self._unavailable(error)
        return self._accepted(result.status, result.delivery_id, started)

    async def areceive(
        self,
        method: str,
        path: str,
        headers: HeadersLike,
        body: bytes,
        *,
        remote_addr: str | None = None,
    ) -> Outcome:
        """``receive`` for ASGI: the durable writes run off the event loop."""
        started = self._received()
        self._start_embedded_worker()
        try:
            delivery = self.admit(method, headers, body)
        except Rejected as error:
            rejection = self._rejection(error, method, path, body, remote_addr)
            await _anever_crash(self.queue.arecord_rejection(rejection))
            return outcome.rejected(error)
        try:
            result = await self.queue.aenqueue(delivery)
        except Exception as error:
            return self._unavailable(error)
        return self._accepted(result.status, result.delivery_id, started)

    def reject(
        self,
        error: Rejected,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        remote_addr: str | None = None,
    ) -> Outcome:
        """The answer to a request an adapter refused before it had the body (e.g. too large)."""
        self._received()
        self._start_embedded_worker()
        _never_crash(
            self.queue.record_rejection, self._rejection(error, method, path, body, remote_addr)
        )
        return outcome.rejected(error)

    async def areject(
        self,
        error: Rejected,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        remote_addr: str | None = None,
    ) -> Outcome:
        """``reject`` for ASGI: recording the rejection never blocks the event loop."""
        self._received()
        self._start_embedded_worker()
        rejection = self._rejection(error, method, path, body, remote_addr)
        await _anever_crash(self.queue.arecord_rejection(rejection))
        return outcome.rejected(error)

    def admit(self, method: str, headers: HeadersLike, body: bytes) -> Delivery:
        """Check method, size, signature; return the Delivery to enqueue or raise ``Rejected``."""
        require_post(method)
        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge(
                f"body of {len(body)} bytes is over the {self.max_body_bytes}-byte cap"
            )
        request_headers = Headers.of(headers)
        verified = self._verify(request_headers, body)
        return Delivery(
            id=new_delivery_id(),
            endpoint=self.endpoint,
            body=body,
            headers=tuple(
                request_headers.safe_items(
                    self.config.redact_headers, drop=self.scheme.signature_headers
                )
            ),
            event_type=verified.event_type,
            dedupe_key=verified.delivery_key,
            received_at=self.clock(),
            scheme=self.scheme.name,
            sender_id=verified.sender_id,
        )

    def precheck(self, headers: HeadersLike) -> None:
        """Refuse, before any body is read, a request whose signature headers are missing or
        malformed: no ``100 Continue``, no slow body read for a request that cannot pass."""
        if self._keys:  # insecure_dev_mode lets unsigned requests in
            self.scheme._parse(Headers.of(headers))  # header parsing only; no MAC, no body

    def _verify(self, headers: Headers, body: bytes) -> Verified:
        if not self._keys:  # insecure_dev_mode, refused at start-up otherwise
            sender_id = self.scheme._header_id(headers)
            return Verified(self.scheme, headers, body, sender_id, None, -1)
        return self.scheme.verify(headers, body, self._keys, self.clock())

    def _received(self) -> float:
        """Tell observers (metrics) a request arrived; return the ack-latency start."""
        events.notify(lambda observer: observer.request_received(self.endpoint))
        return time.perf_counter()

    def _rejection(
        self, error: Rejected, method: str, path: str, body: bytes, remote_addr: str | None
    ) -> Rejection:
        logger.warning(
            "webhook rejected: %s %s from %s: %s (%s)",
            method,
            path,
            remote_addr or "?",
            error.code,
            error.hint,
            # Structured fields for JSON log formatters. Metadata only: the hint names headers
            # and settings, never a secret or digest (exceptions.py); the body is not logged.
            extra={
                "webhook_guard_event": "rejected",
                "reason": error.code,
                "hint": error.hint,
                "endpoint": self.endpoint,
                "method": method,
                "path": path,
                "remote_addr": remote_addr,
                "body_size": len(body),
                "webhook_guard_reason": error.code,  # the first release's names, still set
                "webhook_guard_endpoint": self.endpoint,
            },
        )
        events.notify(lambda observer: observer.request_rejected(self.endpoint, error.code))
        return Rejection(
            received_at=self.clock(),
            endpoint=self.endpoint,
            method=method,
            path=path,
            remote_addr=remote_addr,
            reason=error.code,
            hint=error.hint,
            body_size=len(body),
            body_sha256=hashlib.sha256(body).hexdigest() if body else None,
        )

    def _unavailable(self, error: Exception) -> Outcome:
        cause = error if isinstance(error, QueueUnavailable) else QueueUnavailable(str(error))
        logger.error("webhook not accepted, queue unavailable: %s", cause, exc_info=error)
        events.notify(lambda observer: observer.queue_unavailable(self.endpoint))
        return outcome.unavailable(cause)

    def _accepted(self, status: Enqueued, delivery_id: str, started: float) -> Outcome:
        duplicate = status is Enqueued.DUPLICATE
        seconds = time.perf_counter() - started  # ack latency: receive() entry to the Outcome
        events.notify(
            lambda observer: observer.delivery_accepted(self.endpoint, duplicate, seconds)
        )
        if duplicate:
            return outcome.duplicate(delivery_id)
        return outcome.accepted(delivery_id)

    def _start_embedded_worker(self) -> None:
        """Any request starts this process's consumer (a pid and liveness check once it runs),
        so a backlog left by a crashed process is picked up by the first request after a
        restart, whatever it is."""
        _never_crash(self.ensure_worker)

    # -- the consumer ------------------------------------------------------------------------

    @property
    def consumes_embedded(self) -> bool:
        """True when this process runs this Guard's handlers (embedded worker, own queue)."""
        return self.config.worker == "embedded" and is_consumable(self.queue)

    def ensure_worker(self) -> None:
        """Start this process's consumer of this Guard's store if it is not running (safe after
        fork). One consumer serves every embedded Guard on the store; a no-op for ``external``
        Guards and broker queues, whose deliveries other processes run."""
        if self.consumes_embedded:
            queue: ConsumableQueue = self.queue  # type: ignore[assignment]
            embedded_consumer(queue).ensure_started(self.config.lease_seconds)

    @property
    def worker_running(self) -> bool:
        """True when this process's consumer of this Guard's store is running."""
        if not is_consumable(self.queue):
            return False
        queue: ConsumableQueue = self.queue  # type: ignore[assignment]
        return embedded_consumer(queue).running

    def stop_worker(self, timeout: float = 5.0) -> None:
        """Stop this process's consumer of this Guard's store after the delivery in hand (it
        serves the store's other embedded Guards too)."""
        if is_consumable(self.queue):
            queue: ConsumableQueue = self.queue  # type: ignore[assignment]
            embedded_consumer(queue).stop(timeout)

    def close(self) -> None:
        """Detach from the store: the endpoint name is free for another Guard."""
        registry.detach(self)


def _config_from_arguments(
    given: dict[str, Any], queue: Queue | str | None, scheme_object: HmacScheme | None
) -> GuardConfig:
    """The GuardConfig of keyword settings: what was passed, else the environment, else the
    default."""
    settings: dict[str, Any] = environment_settings()
    if "secret" in given:
        secret = given.pop("secret")
        # GuardConfig applies the rule WEBHOOK_SECRET and the CLI follow: a string is split on
        # commas (split_secrets), a list or tuple is taken as is.
        settings["secrets"] = secret
    if queue is not None:
        settings["queue"] = queue if isinstance(queue, str) else None
    if scheme_object is not None:
        settings["scheme"] = scheme_object.name
        given.pop("scheme", None)
        if "tolerance_seconds" not in given:
            settings.pop("tolerance_seconds", None)  # the scheme object's own tolerance rules
    settings.update(given)
    return GuardConfig(**settings)


# Re-exported here so adapters need one import.
Outcome = outcome.Outcome


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _never_crash(function: Callable[..., Any], *args: Any) -> None:
    """Secondary work (history of rejections, starting the worker) must not fail a request."""
    try:
        function(*args)
    except Exception:
        logger.exception(
            "webhook_guard: %s failed (ignored)", getattr(function, "__name__", function)
        )


async def _anever_crash(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("webhook_guard: recording a rejection failed (ignored)")
