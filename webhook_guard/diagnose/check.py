"""The receiving checklist, run for real against a URL: one ``CheckResult`` per line.

``run_checks`` resolves the host (and says whether the address is one a sender on the internet
can reach), connects (verifying TLS for https), sends one correctly signed test delivery and
times it against the senders' 10-second budget, then sends a tampered and an unsigned copy that
must be rejected. ``explain`` turns any answer into its meaning: an auth layer in front of the
path, a secret that differs, a wrong path or method, a handler that raised inline.

Statuses: ``pass``; ``warn`` (worth knowing, not a failure); ``fail`` (a sender's delivery would
fail); ``skip`` (not meaningful after an earlier failure). Stdlib only, like the core.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from webhook_guard.core.schemes import HmacScheme, get_scheme
from webhook_guard.diagnose.client import (
    Reply,
    RequestFailed,
    SignedRequest,
    Target,
    basic_payload,
    connect,
    parse_url,
    post,
    signed_request,
)
from webhook_guard.exceptions import QueueUnavailable, Rejected

__all__ = [
    "CHECK_EVENT",
    "SENDER_TIMEOUT_SECONDS",
    "CheckResult",
    "Meaning",
    "contract_error",
    "explain",
    "explain_failure",
    "format_results",
    "run_checks",
    "summary",
    "why_unreachable",
]

# Senders give up after about 10 s (the guide's budget; GitHub's is 10 s, Stripe's is shorter
# than its retry spacing) and then retry, so an endpoint that processes before answering gets the
# same delivery again and again.
SENDER_TIMEOUT_SECONDS = 10.0
# Above this share of the budget a passing answer is a warning: a slower day is a timeout.
SLOW_SHARE = 0.5
CHECK_EVENT = "webhook_guard.check"

Status = Literal["pass", "warn", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    """One line of the checklist: what was checked, how it went, why, and what to do."""

    check: str
    status: Status
    detail: str
    fix: str = ""
    latency: float | None = None

    @property
    def failed(self) -> bool:
        """True when the check failed (warnings and skips are not failures)."""
        return self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (``check --json``)."""
        row = asdict(self)
        if self.latency is not None:
            row["latency"] = round(self.latency, 4)
        return row

    def line(self) -> str:
        """The detail and the fix as one sentence."""
        return f"{self.detail}; {self.fix}" if self.fix else self.detail


@dataclass(frozen=True)
class Meaning:
    """What an answer means for a sender, and what to change."""

    ok: bool
    cause: str
    fix: str = ""


def _known_codes() -> frozenset[str]:
    codes = {QueueUnavailable.code}
    pending: list[type[Rejected]] = [Rejected]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return frozenset(codes)


# The reason codes of the response contract: a body {"error": <one of these>} is webhook_guard's.
KNOWN_CODES = _known_codes()


def contract_error(body: bytes) -> str | None:
    """The reason code if ``body`` is a webhook_guard rejection (``{"error": "<code>"}``)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(parsed, dict) and set(parsed) == {"error"}:
        code = parsed["error"]
        if isinstance(code, str) and code in KNOWN_CODES:
            return code
    return None


_CODE_MEANINGS: dict[str, tuple[str, str]] = {
    "signature_mismatch": (
        "the secret differs between sender and receiver",
        "use the same secret on both sides, copied again without surrounding whitespace "
        "(after a rotation, the receiver must list the new secret too)",
    ),
    "missing_signature": (
        "the receiver found no signature header of its scheme: it expects another scheme, "
        "or a proxy in front strips the header",
        "pass the receiver's scheme with --scheme, or make the proxy forward the header",
    ),
    "malformed_signature": (
        "the receiver could not parse the signature header: it expects another scheme",
        "pass the receiver's scheme with --scheme",
    ),
    "missing_timestamp": (
        "the receiver expects a signed timestamp this scheme does not send",
        "pass the receiver's scheme with --scheme",
    ),
    "malformed_timestamp": (
        "the receiver could not read the timestamp header",
        "pass the receiver's scheme with --scheme",
    ),
    "timestamp_out_of_tolerance": (
        "the receiver's clock and this host's differ by more than its tolerance",
        "sync both clocks with NTP",
    ),
    "payload_too_large": (
        "the body is over the receiver's size cap",
        "raise max_body_bytes (WEBHOOK_GUARD_MAX_BODY_BYTES) to the largest event the sender sends",
    ),
    "queue_unavailable": (
        "the receiver could not store the delivery; the sender will retry after Retry-After",
        "fix the store: a writable database path, free disk, a reachable broker",
    ),
}


def explain(reply: Reply, *, path: str) -> Meaning:
    """The meaning of ``reply`` to a correctly signed POST at ``path``."""
    status = reply.status
    if reply.ok:
        return Meaning(True, f"answered {status} {reply.reason}".rstrip())
    code = contract_error(reply.body)
    if code in _CODE_MEANINGS:
        cause, fix = _CODE_MEANINGS[code]
        return Meaning(False, f"{status} {code}: {cause}", fix)
    if code is not None:
        return Meaning(False, f"{status} {code}: the receiver refused the request")
    if 300 <= status < 400:
        location = reply.header("Location") or "no Location"
        return Meaning(
            False,
            f"the endpoint redirects ({status} to {location}) and senders do not follow redirects",
            "give the sender the final URL (https, host and trailing slash as the app serves it)",
        )
    if status in (401, 403):
        return Meaning(
            False,
            f"{status} without a webhook_guard error code: an auth layer in front of the webhook "
            "path rejected the sender (login, basic auth, CSRF, an API gateway or a WAF)",
            "exempt the path from it; the signature is the webhook's authentication",
        )
    if status == 404:
        return Meaning(
            False,
            f"404: nothing is routed at {path}",
            "check the path against the app's route (prefix, mount point, trailing slash)",
        )
    if status == 405:
        return Meaning(
            False,
            f"405: the route at {path} does not accept POST",
            "senders always POST: allow POST on that route",
        )
    if status == 413:
        return Meaning(
            False,
            "413 without a webhook_guard error code: a proxy in front refused the body size",
            "raise its limit (nginx: client_max_body_size)",
        )
    if status == 500:
        return Meaning(
            False,
            "500: the endpoint raised while processing inline",
            "answer 200 first and process in a worker; the traceback is in the app's log",
        )
    if status in (502, 504):
        return Meaning(
            False,
            f"{status}: a proxy or load balancer in front got no answer from the app",
            "start the app behind it, and answer before its timeout: 200 first, process later",
        )
    if status == 503:
        return Meaning(
            False,
            "503: the app or a proxy in front is unavailable",
            "check that the app is up and healthy behind the proxy",
        )
    return Meaning(False, f"unexpected {status} {reply.reason}".rstrip(), "see the body above")


def explain_failure(error: RequestFailed, budget: float) -> Meaning:
    """The meaning of a request that got no answer at all."""
    if error.timed_out and error.stage == "response":
        return Meaning(
            False,
            f"the endpoint took longer than {budget:g} s: it processes before answering",
            "answer 200 first and process in a worker",
        )
    return Meaning(False, str(error))


def run_checks(
    url: str,
    secret: str,
    scheme: str | HmacScheme = "cloudaipilot",
    *,
    budget: float = SENDER_TIMEOUT_SECONDS,
    allow_http: bool = False,
    event: str = CHECK_EVENT,
) -> list[CheckResult]:
    """Run the checklist against ``url`` (one real signed test delivery is sent)."""
    return list(
        iter_checks(url, secret, scheme, budget=budget, allow_http=allow_http, event=event)
    )


def iter_checks(
    url: str,
    secret: str,
    scheme: str | HmacScheme = "cloudaipilot",
    *,
    budget: float = SENDER_TIMEOUT_SECONDS,
    allow_http: bool = False,
    event: str = CHECK_EVENT,
) -> Iterator[CheckResult]:
    """``run_checks``, each result as soon as its check finishes (the CLI prints it then).
    Usage errors (a bad URL, a secret the scheme cannot use) raise before the first result."""
    target = parse_url(url)
    resolved = get_scheme(scheme)
    resolved.key_for(secret)  # a secret the scheme cannot use is a usage error: raise it now
    return _checks(target, resolved, secret, budget, allow_http, event)


def _checks(
    target: Target,
    resolved: HmacScheme,
    secret: str,
    budget: float,
    allow_http: bool,
    event: str,
) -> Iterator[CheckResult]:
    yield _https(target, allow_http)
    addresses, row = _resolve(target)
    yield row
    if not addresses:
        yield from _skipped(("address", "connects", "signed", "tampered", "unsigned"), row)
        return
    yield _address(target, addresses)
    row = _connects(target, budget)
    yield row
    if row.failed:
        yield from _skipped(("signed", "tampered", "unsigned"), row)
        return
    body = basic_payload(resolved, event)
    signed = _signed(target, signed_request(resolved, secret, body, event=event), budget)
    yield signed
    if signed.failed:
        reason = (
            "not run: the signed delivery got no answer"
            if signed.latency is None
            else "not meaningful: the signed delivery was not accepted either"
        )
        yield from (CheckResult(n, "skip", reason) for n in ("tampered", "unsigned"))
        return
    tampered = signed_request(resolved, secret, basic_payload(resolved, event), tampered=True)
    yield _rejected("tampered", "a tampered body", target, tampered, budget)
    unsigned = signed_request(resolved, secret, basic_payload(resolved, event), unsigned=True)
    yield _rejected("unsigned", "an unsigned request", target, unsigned, budget)


# The longest check name: rows printed one at a time still line up.
CHECK_NAME_WIDTH = len("connects")


def format_row(row: CheckResult, width: int = CHECK_NAME_WIDTH) -> str:
    """One check as an aligned text line."""
    return f"{row.status.upper():4}  {row.check:<{width}}  {row.line()}"


def format_results(rows: list[CheckResult]) -> str:
    """The checklist as aligned text lines."""
    width = max(len(r.check) for r in rows)
    return "\n".join(f"{r.status.upper():4}  {r.check:<{width}}  {r.line()}" for r in rows)


def summary(rows: list[CheckResult]) -> str:
    """``"5 pass, 2 warn"``: how many checks ended each way."""
    counts = {s: sum(r.status == s for r in rows) for s in ("pass", "warn", "fail", "skip")}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


# -- the checks ----------------------------------------------------------------------------------


def _https(target: Target, allow_http: bool) -> CheckResult:
    if target.is_https:
        return CheckResult("https", "pass", "the URL uses https")
    if allow_http:
        return CheckResult(
            "https",
            "warn",
            "the URL is plain http: senders require https (allowed by --allow-http for a local "
            "test)",
        )
    return CheckResult(
        "https",
        "fail",
        "the URL is plain http: senders require https",
        "serve the endpoint over https with a certificate from a public CA (or pass "
        "--allow-http for a local test)",
    )


def _resolve(target: Target) -> tuple[list[str], CheckResult]:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        return [], CheckResult(
            "resolves",
            "fail",
            f"{target.host} does not resolve ({reason})",
            "check the host name, and that its DNS record exists where the sender looks it up",
        )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return addresses, CheckResult(
        "resolves", "pass", f"{target.host} resolves to {', '.join(addresses)}"
    )


def _address(target: Target, addresses: list[str]) -> CheckResult:
    kinds = {a: why_unreachable(a) for a in addresses}
    unreachable = {a: k for a, k in kinds.items() if k}
    if not unreachable:
        return CheckResult(
            "address", "pass", "public address: a sender on the internet can reach it"
        )
    described = ", ".join(f"{a} is {k}" for a, k in unreachable.items())
    scope = "it" if len(unreachable) == len(addresses) else f"those addresses of {target.host}"
    return CheckResult(
        "address",
        "warn",
        f"{described}: a sender on the internet cannot reach {scope} (fine for a local test)",
        "give real senders a public https URL (your load balancer, or a tunnel while developing)",
    )


def why_unreachable(address: str) -> str:
    """Why ``address`` is unreachable from the internet, or '' if it is a public address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return ""
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_unspecified or ip.is_reserved or ip.is_multicast or not ip.is_global:
        return "not a public address"
    return ""


def _connects(target: Target, budget: float) -> CheckResult:
    try:
        peer = connect(target, budget)
    except RequestFailed as error:
        return CheckResult("connects", "fail", str(error))
    return CheckResult("connects", "pass", f"connected to {peer}")


def _signed(target: Target, request: SignedRequest, budget: float) -> CheckResult:
    try:
        reply = post(target, request, timeout=budget)
    except RequestFailed as error:
        meaning = explain_failure(error, budget)
        return CheckResult("signed", "fail", meaning.cause, meaning.fix)
    timing = f"in {_duration(reply.latency)} of the {budget:g} s budget"
    if reply.latency > budget:
        meaning = explain_failure(RequestFailed("", stage="response", timed_out=True), budget)
        return CheckResult(
            "signed", "fail", f"{meaning.cause} ({timing})", meaning.fix, reply.latency
        )
    meaning = explain(reply, path=target.path)
    if not meaning.ok:
        return CheckResult(
            "signed", "fail", f"signed delivery: {meaning.cause}", meaning.fix, reply.latency
        )
    detail = f"a signed delivery was answered {reply.status} {timing}"
    if reply.latency > budget * SLOW_SHARE:
        return CheckResult(
            "signed",
            "warn",
            detail + ": close to the budget, a busier moment is a timeout",
            "answer 200 first and process in a worker",
            reply.latency,
        )
    return CheckResult("signed", "pass", detail, latency=reply.latency)


def _rejected(
    name: str, what: str, target: Target, request: SignedRequest, budget: float
) -> CheckResult:
    """``request`` must be refused: a 2xx means the endpoint does not verify signatures."""
    try:
        reply = post(target, request, timeout=budget)
    except RequestFailed as error:
        return CheckResult(name, "warn", f"{what} got no answer: {error}")
    if reply.ok:
        return CheckResult(
            name,
            "fail",
            f"{what} was answered {reply.status}: signature verification is off",
            "verify the signature over the raw body before answering (and never run with "
            "insecure_dev_mode outside development)",
            reply.latency,
        )
    code = contract_error(reply.body)
    shown = f"{reply.status} {code}" if code else f"{reply.status} {reply.reason}".rstrip()
    if reply.status >= 500:
        return CheckResult(
            name,
            "warn",
            f"{what} was rejected, but with {shown}",
            "answer 400/401 to a bad signature: a 5xx makes the sender retry what cannot succeed",
            reply.latency,
        )
    return CheckResult(name, "pass", f"{what} was rejected with {shown}", latency=reply.latency)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _skipped(names: tuple[str, ...], cause: CheckResult) -> list[CheckResult]:
    return [CheckResult(n, "skip", f"not run: {cause.check} failed") for n in names]
