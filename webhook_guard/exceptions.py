"""Every error webhook_guard raises, in one tree.

::

    WebhookGuardError
    ├── ConfigurationError              a setting is missing or wrong; raised at start-up
    │   └── MissingSecret               no signing secret and no insecure_dev_mode
    ├── Rejected                        a request we refuse; carries .status and .code
    │   ├── MissingSignature            400 missing_signature
    │   ├── MalformedSignature          400 malformed_signature
    │   ├── MissingTimestamp            400 missing_timestamp
    │   ├── MalformedTimestamp          400 malformed_timestamp
    │   ├── IncompleteBody              400 incomplete_body
    │   ├── InvalidContentLength        400 invalid_content_length
    │   ├── LengthRequired              411 length_required
    │   ├── SignatureMismatch           401 signature_mismatch
    │   ├── TimestampOutOfTolerance     401 timestamp_out_of_tolerance
    │   ├── MethodNotAllowed            405 method_not_allowed
    │   ├── RequestTimeout              408 request_timeout
    │   └── PayloadTooLarge             413 payload_too_large
    ├── QueueUnavailable                the store/broker failed; 503 + Retry-After
    ├── diagnose.client.InvalidURL      the CLI was given a URL it cannot send to
    ├── diagnose.client.RequestFailed   the CLI got no HTTP answer (cause in words)
    └── HandlerSignal                   raised by handlers to steer the worker
        ├── Retry                       run again later (``after`` seconds)
        └── PermanentFailure            dead-letter now, do not retry

Messages name the header or setting at fault; they never contain a secret or an expected
digest. ``Rejected.hint`` is for logs and the delivery history only, never for the sender.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "HandlerSignal",
    "IncompleteBody",
    "InvalidContentLength",
    "LengthRequired",
    "MalformedSignature",
    "MalformedTimestamp",
    "MethodNotAllowed",
    "MissingSecret",
    "MissingSignature",
    "MissingTimestamp",
    "PayloadTooLarge",
    "PermanentFailure",
    "QueueUnavailable",
    "Rejected",
    "RequestTimeout",
    "Retry",
    "SignatureMismatch",
    "TimestampOutOfTolerance",
    "WebhookGuardError",
]


class WebhookGuardError(Exception):
    """Root of every error raised by webhook_guard."""


class ConfigurationError(WebhookGuardError):
    """A setting is missing or invalid. Raised when the Guard is built, never per request."""


class MissingSecret(ConfigurationError):
    """A Guard was built without a signing secret (and without ``insecure_dev_mode``)."""


class Rejected(WebhookGuardError):
    """A request we refuse. ``code`` goes to the sender; ``hint`` only to logs and history."""

    status: int = 400
    code: str = "rejected"

    def __init__(self, hint: str = "") -> None:
        super().__init__(hint or self.code)
        self.hint = hint


class MissingSignature(Rejected):
    """400 ``missing_signature``: the scheme's signature header is absent."""

    status, code = 400, "missing_signature"


class MalformedSignature(Rejected):
    """400 ``malformed_signature``: the signature header is there but unreadable."""

    status, code = 400, "malformed_signature"


class MissingTimestamp(Rejected):
    """400 ``missing_timestamp``: the scheme signs a timestamp that did not arrive."""

    status, code = 400, "missing_timestamp"


class MalformedTimestamp(Rejected):
    """400 ``malformed_timestamp``: the signed timestamp is not Unix seconds."""

    status, code = 400, "malformed_timestamp"


class IncompleteBody(Rejected):
    """400 ``incomplete_body``: fewer bytes arrived than Content-Length declared."""

    status, code = 400, "incomplete_body"


class InvalidContentLength(Rejected):
    """400 ``invalid_content_length``: Content-Length is not a non-negative integer."""

    status, code = 400, "invalid_content_length"


class LengthRequired(Rejected):
    """411 ``length_required``: a chunked body this server cannot pass on."""

    status, code = 411, "length_required"


class SignatureMismatch(Rejected):
    """401 ``signature_mismatch``: no configured secret signs these bytes."""

    status, code = 401, "signature_mismatch"


class TimestampOutOfTolerance(Rejected):
    """401 ``timestamp_out_of_tolerance``: the signed time is too far from now."""

    status, code = 401, "timestamp_out_of_tolerance"


class MethodNotAllowed(Rejected):
    """405 ``method_not_allowed``: a webhook path takes POST only."""

    status, code = 405, "method_not_allowed"


class RequestTimeout(Rejected):
    """408 ``request_timeout``: the body was still arriving at the request deadline."""

    status, code = 408, "request_timeout"


class PayloadTooLarge(Rejected):
    """413 ``payload_too_large``: the body is over the cap (not read past it)."""

    status, code = 413, "payload_too_large"


class QueueUnavailable(WebhookGuardError):
    """The queue or store could not durably accept a delivery; the sender must retry."""

    status = 503
    code = "queue_unavailable"


class HandlerSignal(WebhookGuardError):
    """Base of the exceptions a handler raises on purpose to steer the worker."""


class Retry(HandlerSignal):
    """Ask the worker to run this delivery again, ``after`` seconds from now at the earliest."""

    def __init__(self, after: float | None = None, reason: str = "") -> None:
        super().__init__(reason or (f"retry requested after {after}s" if after else "retry"))
        self.after = after


class PermanentFailure(HandlerSignal):
    """Dead-letter this delivery now: retrying cannot help."""
