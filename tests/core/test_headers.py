"""webhook_guard.core.headers: the case-insensitive multi-map every scheme reads."""

from __future__ import annotations

import pytest

from webhook_guard.core.headers import Headers, is_credential_header, normalise_patterns
from webhook_guard.exceptions import MalformedSignature


def test_lookup_ignores_case() -> None:
    """A header is found whatever the case of its name, in the map or the lookup."""
    headers = Headers({"X-Hub-Signature-256": "sha256=ab"})
    assert headers.get("x-hub-signature-256") == "sha256=ab"
    assert headers.get("X-HUB-SIGNATURE-256") == "sha256=ab"
    assert "x-Hub-signature-256" in headers
    assert headers.get("X-Missing") is None
    assert 42 not in headers


def test_builds_from_pairs_mappings_and_headers() -> None:
    """Headers accepts (name, value) pairs, a mapping, or another Headers (copied)."""
    pairs = Headers([("A", "1"), ("b", "2")])
    assert Headers({"A": "1", "b": "2"}).get("a") == pairs.get("a") == "1"
    copy = Headers(pairs)
    assert list(copy) == list(pairs) == [("a", "1"), ("b", "2")]


def test_repeated_header_keeps_every_value_in_order() -> None:
    """get_all returns every value of a repeated header in arrival order."""
    headers = Headers([("Accept", "a"), ("accept", "b")])
    assert headers.get_all("ACCEPT") == ["a", "b"]
    assert headers.get_all("missing") == []


def test_repeated_header_with_one_value_is_that_value() -> None:
    """A header repeated with one identical value reads as that value."""
    assert Headers([("X-Id", "7"), ("x-id", "7")]).get("X-Id") == "7"


def test_repeated_header_with_different_values_is_malformed() -> None:
    """A header repeated with different values is refused, naming the header."""
    with pytest.raises(MalformedSignature, match="X-Id"):
        Headers([("X-Id", "7"), ("x-id", "8")]).get("X-Id")


def test_empty_value_is_returned_empty() -> None:
    """An empty header value reads as an empty string, for the scheme to judge."""
    assert Headers({"X-Id": ""}).get("X-Id") == ""


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "X-Api-Key",
        "X-Auth-Token",
        "X-Session",
        "X-Access-Key",
        "X-Signing-Key",
        "X_API_KEY",
        "X-Client-Secret",
        "X-Db-Passwd",
        "X-Amz-Security-Token",
        "X-Shopify-Access-Token",
        "Stripe-Signature",
        "X-Credentials",
    ],
)
def test_credential_headers_are_recognised(name: str) -> None:
    """Headers whose names say they carry a credential are recognised."""
    assert is_credential_header(name)


def test_safe_items_and_repr_drop_credentials_and_signatures() -> None:
    """safe_items and repr drop credentials and signature headers, and keep the rest."""
    headers = Headers(
        {
            "Authorization": "Bearer hunter2",
            "Cookie": "sid=hunter3",
            "X-Hub-Signature-256": "hunter4",
            "X-GitHub-Event": "push",
        }
    )
    assert headers.safe_items() == [("x-github-event", "push")]
    assert "hunter" not in repr(headers)


@pytest.mark.parametrize(
    "name", ["Content-Type", "User-Agent", "X-GitHub-Event", "X-GitHub-Delivery", "webhook-id"]
)
def test_ordinary_headers_are_kept(name: str) -> None:
    """Headers whose names hold no credential pattern are stored and shown."""
    assert not is_credential_header(name)
    assert Headers({name: "v"}).safe_items() == [(name.lower(), "v")]


def test_extra_patterns_and_exact_names_are_dropped_too() -> None:
    """safe_items takes more patterns ("_" read as "-") and exact names to drop."""
    headers = Headers({"X-Tenant-Pin": "1234", "X-Shopify-Hmac-Sha256": "sig", "X-Other": "ok"})
    extra = normalise_patterns(["TENANT_PIN"])
    assert extra == ("tenant-pin",)
    kept = headers.safe_items(extra, drop=["x-shopify-hmac-SHA256"])
    assert kept == [("x-other", "ok")]


@pytest.mark.parametrize("bad", [[""], ["  "], [3]])
def test_empty_or_non_text_patterns_are_refused(bad: list[object]) -> None:
    """An empty pattern would match every header; a non-string is no pattern."""
    with pytest.raises((ValueError, TypeError)):
        normalise_patterns(bad)  # type: ignore[arg-type]


def test_wsgi_headers_match_werkzeugs_request_headers() -> None:
    """Read straight from the environ, the headers are Werkzeug's, name for name and in order
    (the Flask adapter stores and verifies what Werkzeug would have handed it)."""
    from werkzeug.datastructures import EnvironHeaders

    from webhook_guard.core.headers import wsgi_headers

    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "",  # empty: not a header
        "HTTP_X_HUB_SIGNATURE_256": "sha256=ab",
        "HTTP_CONTENT_TYPE": "text/plain",  # a CGI artefact Werkzeug skips
        "HTTP_USER_AGENT": "GitHub-Hookshot/1",
        "HTTP_X_GITHUB_EVENT": "push",
        "SERVER_NAME": "h",
    }
    assert wsgi_headers(environ) == list(EnvironHeaders(environ).items())
    assert wsgi_headers(environ)[1] == ("X-Hub-Signature-256", "sha256=ab")
