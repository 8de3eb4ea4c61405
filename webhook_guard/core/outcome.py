"""The neutral response every adapter renders byte for byte: the response contract."""

from __future__ import annotations

import json
from dataclasses import dataclass

from webhook_guard.exceptions import QueueUnavailable, Rejected

# Seconds a sender should wait after a 503 before retrying.
RETRY_AFTER_SECONDS = 5

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Outcome:
    """Status, headers and body of the answer to one webhook request."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # The rest of the request body was not read, so the connection cannot be reused. A transport
    # concern: ASGI adapters send "Connection: close"; WSGI forbids hop-by-hop headers (PEP 3333)
    # and its servers close or drain on their own.
    close_connection: bool = False

    @property
    def reason(self) -> str:
        """The HTTP reason phrase of ``status`` (``OK``, ``Unauthorized``, ...)."""
        return _REASONS.get(self.status, "")

    @property
    def status_line(self) -> str:
        """``"200 OK"``: what WSGI's ``start_response`` wants."""
        return f"{self.status} {self.reason}"


def json_outcome(status: int, payload: dict[str, str], *extra: tuple[str, str]) -> Outcome:
    """An Outcome with a JSON body, its Content-Type and Content-Length, and ``extra`` headers."""
    body = json.dumps(payload, separators=(", ", ": ")).encode("ascii")
    headers = (("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra)
    return Outcome(status, headers, body)


def accepted(delivery_id: str) -> Outcome:
    """200 ``{"status": "ok", "id": ...}``: a new delivery, stored durably."""
    return _acknowledged("ok", delivery_id)


def duplicate(delivery_id: str) -> Outcome:
    """200 ``{"status": "duplicate", "id": ...}``, naming the delivery first accepted."""
    return _acknowledged("duplicate", delivery_id)


def _acknowledged(status: str, delivery_id: str) -> Outcome:
    # The hot path: the same bytes json_outcome would give, without json.dumps. Our ids are
    # hex; anything else takes the general path so it is escaped properly.
    if not delivery_id.isalnum() or not delivery_id.isascii():
        return json_outcome(200, {"status": status, "id": delivery_id})
    body = b'{"status": "%s", "id": "%s"}' % (status.encode(), delivery_id.encode())
    return Outcome(
        200, (("Content-Type", "application/json"), ("Content-Length", str(len(body)))), body
    )


def rejected(error: Rejected) -> Outcome:
    """The 4xx answer to a refused request: ``{"error": <code>}`` (and ``Allow: POST`` for 405)."""
    extra: tuple[tuple[str, str], ...] = (("Allow", "POST"),) if error.status == 405 else ()
    outcome = json_outcome(error.status, {"error": error.code}, *extra)
    if error.status in (408, 413):  # the rest of the body is still on the connection
        return Outcome(outcome.status, outcome.headers, outcome.body, close_connection=True)
    return outcome


def unavailable(error: QueueUnavailable) -> Outcome:
    """503 ``{"error": "queue_unavailable"}`` with ``Retry-After``: the sender retries."""
    return json_outcome(
        error.status, {"error": error.code}, ("Retry-After", str(RETRY_AFTER_SECONDS))
    )
