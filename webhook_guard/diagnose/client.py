"""The sender's side, in the standard library: sign a delivery for any preset and POST it.

``signed_request`` builds what a correct sender of a scheme would send (optionally tampered
after signing); ``post`` sends it with ``http.client`` (HTTPS through ``ssl``'s default context,
certificates verified) and returns the status, headers, body and latency. A request that gets no
HTTP answer raises ``RequestFailed`` whose message says, in words, what went wrong (DNS,
refused, timeout, TLS). Redirects are not followed: senders do not follow them either.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

from webhook_guard._version import __version__
from webhook_guard.core.schemes import HmacScheme, get_scheme
from webhook_guard.exceptions import WebhookGuardError

__all__ = [
    "DEFAULT_EVENT",
    "InvalidURL",
    "Reply",
    "RequestFailed",
    "SignedRequest",
    "Target",
    "basic_payload",
    "connect",
    "parse_url",
    "post",
    "signed_request",
    "tamper",
]

DEFAULT_EVENT = "webhook_guard.test"
USER_AGENT = f"webhook-guard-diagnose/{__version__}"
# More than any sane acknowledgement needs; the rest of a large body is not read.
MAX_REPLY_BYTES = 64 * 1024


class InvalidURL(WebhookGuardError):
    """The URL is not an absolute http:// or https:// URL with a host."""


class RequestFailed(WebhookGuardError):
    """No HTTP answer came back. ``stage`` is ``resolve``, ``connect``, ``tls`` or ``response``;
    ``timed_out`` tells a timeout from a refusal or a reset."""

    def __init__(self, message: str, *, stage: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.stage = stage
        self.timed_out = timed_out


@dataclass(frozen=True)
class Target:
    """Where a delivery goes."""

    url: str
    scheme: str  # "http" or "https"
    host: str
    port: int
    path: str  # path and query, as sent on the request line

    @property
    def is_https(self) -> bool:
        """True for an https:// URL."""
        return self.scheme == "https"


@dataclass(frozen=True)
class Reply:
    """What the endpoint answered."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    latency: float  # seconds from opening the connection to the end of the body

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """The value of response header ``name`` (case-insensitive), if any."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def text(self, limit: int = 2000) -> str:
        """The body as text, cut at ``limit`` characters, for showing to a person."""
        text = self.body.decode("utf-8", "replace")
        return text if len(text) <= limit else text[:limit] + f"... ({len(self.body)} bytes)"


@dataclass(frozen=True)
class SignedRequest:
    """Headers and body of one delivery, exactly as they will be sent."""

    headers: dict[str, str]
    body: bytes
    scheme: str
    tampered: bool = False


def parse_url(url: str) -> Target:
    """The target of ``url``; raises ``InvalidURL`` naming what is wrong."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise InvalidURL(f"{url!r} must start with https:// (or http:// for a local test)")
    if not parts.hostname:
        raise InvalidURL(f"{url!r} has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidURL(f"{url!r} has an invalid port") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url.strip(), parts.scheme, parts.hostname, port, path)


def basic_payload(
    scheme: str | HmacScheme, event: str = DEFAULT_EVENT, delivery_id: str | None = None
) -> bytes:
    """A small JSON test event, with the event type and a fresh id in the fields the scheme
    reads (``event``/``type``, ``id``/``event_id``), so that the receiver files it properly."""
    resolved = get_scheme(scheme)
    event_field = resolved.event_fields[0] if resolved.event_fields else "event"
    id_field = resolved.id_fields[0] if resolved.id_fields else "id"
    payload = {
        event_field: event,
        id_field: delivery_id or f"evt_{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
    }
    # Bytes that no JSON library re-serializes the same way: compact separators, raw UTF-8,
    # and a float with a trailing zero. A receiver that verifies the signature over parsed and
    # re-serialized JSON instead of the raw body fails on them, as it would on real senders'.
    head = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)[:-1]
    extra = ',"data":{"message":"test delivery from webhook-guard, déjà vu","amount":10.50}}'
    return (head + extra).encode("utf-8")


def tamper(body: bytes) -> bytes:
    """``body`` changed after signing, the way an attacker or a re-encoding proxy would."""
    stripped = body.rstrip()
    if stripped.endswith(b"}"):
        separator = b"" if stripped[:-1].rstrip().endswith(b"{") else b", "
        return stripped[:-1].rstrip() + separator + b'"tampered": true}'
    return body + b" tampered"


def signed_request(
    scheme: str | HmacScheme,
    secret: str,
    body: bytes,
    *,
    event: str | None = None,
    msg_id: str | None = None,
    timestamp: int | None = None,
    tampered: bool = False,
    unsigned: bool = False,
) -> SignedRequest:
    """What a correct sender of ``scheme`` sends for ``body``; ``tampered`` changes the body after
    signing, ``unsigned`` leaves the signature header out (the other headers stay)."""
    resolved = get_scheme(scheme)
    headers = resolved.sign(body, secret, timestamp=timestamp, msg_id=msg_id, event=event)
    headers["User-Agent"] = USER_AGENT
    if unsigned:
        headers.pop(resolved.signature_header, None)
    return SignedRequest(headers, tamper(body) if tampered else body, resolved.name, tampered)


def connect(target: Target, timeout: float) -> str:
    """Open (and close) a TCP connection, with a verified TLS handshake for https.

    Returns a description of the peer (``127.0.0.1:8000``, plus the TLS version); raises
    ``RequestFailed`` with the cause in words.
    """
    proxy = proxy_for(target)
    if proxy is not None:  # what can be checked here is the way to the proxy
        try:
            with socket.create_connection(proxy, timeout=timeout) as sock:
                return f"{_peer(sock)} (the proxy from the environment, for {target.host})"
        except OSError as error:
            raise _failure(error, target, "connect", timeout) from None
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OSError as error:
        raise _failure(error, target, "connect", timeout) from None
    with sock:
        peer = _peer(sock)
        if not target.is_https:
            return peer
        try:
            context = ssl.create_default_context()
            with context.wrap_socket(sock, server_hostname=target.host) as tls:
                return f"{peer} ({tls.version()}, certificate valid for {target.host})"
        except OSError as error:
            raise _failure(error, target, "tls", timeout) from None


def proxy_for(target: Target) -> tuple[str, int] | None:
    """The proxy the environment names for ``target`` (``HTTPS_PROXY`` / ``HTTP_PROXY``, as
    curl and requests read them), or None when none is set or ``NO_PROXY`` exempts the host."""
    url = urllib.request.getproxies().get("https" if target.is_https else "http")
    if not url or urllib.request.proxy_bypass(target.host):
        return None
    parts = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def post(target: Target, request: SignedRequest, *, timeout: float) -> Reply:
    """POST ``request`` to ``target`` (through the environment's proxy, if one applies) and
    read the answer; never follows a redirect."""
    connection: http.client.HTTPConnection
    proxy = proxy_for(target)
    path, headers = target.path, dict(request.headers)
    if target.is_https:
        host, port = proxy or (target.host, target.port)
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
        if proxy:
            connection.set_tunnel(target.host, target.port)  # CONNECT, then TLS to the target
    elif proxy:
        connection = http.client.HTTPConnection(*proxy, timeout=timeout)
        # A plain-HTTP proxy takes the absolute URL and forwards to the Host it names.
        authority = f"[{target.host}]" if ":" in target.host else target.host
        path = f"http://{authority}:{target.port}{target.path}"
        headers["Host"] = f"{authority}:{target.port}"
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    started = time.monotonic()
    stage = "connect"
    try:
        connection.connect()
        stage = "response"
        connection.request("POST", path, body=request.body, headers=headers)
        response = connection.getresponse()
        body = response.read(MAX_REPLY_BYTES)
        return Reply(
            status=response.status,
            reason=response.reason,
            headers=tuple(response.getheaders()),
            body=body,
            latency=time.monotonic() - started,
        )
    except (OSError, http.client.HTTPException) as error:
        if stage == "connect" and target.is_https and isinstance(error, ssl.SSLError):
            stage = "tls"
        raise _failure(error, target, stage, timeout) from None
    finally:
        connection.close()


def _peer(sock: socket.socket) -> str:
    address = sock.getpeername()
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _failure(error: BaseException, target: Target, stage: str, timeout: float) -> RequestFailed:
    """``error`` in words a person can act on."""
    where = f"{target.host}:{target.port}"
    if isinstance(error, socket.gaierror):
        return RequestFailed(
            f"{target.host} does not resolve ({error.strerror}): check the host name and DNS",
            stage="resolve",
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return RequestFailed(
            f"the TLS certificate of {target.host} is not trusted ({error.verify_message}): "
            "senders refuse it too; serve a certificate from a public CA with its full chain",
            stage="tls",
        )
    if isinstance(error, ssl.SSLError):
        return RequestFailed(
            f"the TLS handshake with {where} failed ({error.reason or error}): does that port "
            "serve plain HTTP, or an outdated TLS setup?",
            stage="tls",
        )
    if isinstance(error, TimeoutError):
        if stage == "response":
            return RequestFailed(
                f"no answer from {where} within {timeout:g} s", stage=stage, timed_out=True
            )
        return RequestFailed(
            f"no connection to {where} within {timeout:g} s: a firewall drops the packets or "
            "the address is wrong",
            stage=stage,
            timed_out=True,
        )
    if isinstance(error, ConnectionRefusedError):
        return RequestFailed(
            f"connection to {where} refused: nothing listens on that port (is the server "
            "running, on that port and interface?)",
            stage=stage,
        )
    if isinstance(error, (ConnectionResetError, http.client.RemoteDisconnected)):
        hint = "" if target.is_https else "; or the port serves https: try an https:// URL"
        return RequestFailed(
            f"{where} closed the connection without answering: the server crashed on the "
            f"request, or a proxy cut it{hint}",
            stage=stage,
        )
    if isinstance(error, http.client.HTTPException):
        return RequestFailed(
            f"{where} answered something that is not HTTP ({error!r})", stage=stage
        )
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return RequestFailed(f"cannot reach {where}: {reason}", stage=stage)
