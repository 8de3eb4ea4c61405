"""The dashboard through its WSGI callable: authorization, filters, pages, escaping, CSRF."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dashboard.history import (
    HEADER_SCRIPT,
    SCRIPT,
    History,
    WSGIResult,
    build_history,
    call_wsgi,
)
from webhook_guard.core.headers import Headers
from webhook_guard.dashboard import Dashboard, RequestInfo, loopback_only
from webhook_guard.dashboard.app import CSRF_COOKIE, SECURITY_HEADERS
from webhook_guard.dashboard.pages import ChartWindow, Filters
from webhook_guard.exceptions import ConfigurationError
from webhook_guard.queues.sqlite import DeliveryRecord, RejectionRecord

NOW = 1_800_000_000.0
PREFIX = "/admin/webhooks"


def allow(request: RequestInfo) -> bool:
    return True


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """One history for the read-only tests: received over the 6 hours before NOW."""
    return build_history(tmp_path_factory.mktemp("dash") / "q.db", now=NOW, spread=6 * 3600)


@pytest.fixture
def fresh(tmp_path: Path) -> History:
    """A history of its own, for tests that replay."""
    return build_history(tmp_path / "q.db", now=NOW, spread=6 * 3600)


def dashboard(history: History, **options: Any) -> Dashboard:
    options.setdefault("authorize", allow)
    return Dashboard(history.queue(), clock=lambda: NOW, **options)


def statuses(page: WSGIResult) -> list[str]:
    return re.findall(r'<tr class="row[^"]*" data-status="([a-z]+)"', page.body)


def row_ids(page: WSGIResult) -> list[str]:
    return re.findall(r'<tr class="row[^"]*" data-status="[a-z]+" data-id="([^"]+)"', page.body)


def csrf_cookie(page: WSGIResult) -> str:
    cookie = page.header("Set-Cookie") or ""
    match = re.match(rf"{CSRF_COOKIE}=([A-Za-z0-9_-]+);", cookie)
    assert match, cookie
    return match.group(1)


# -- closed by default -----------------------------------------------------------------------


def test_constructing_without_authorize_is_refused_with_the_reason(history: History) -> None:
    """No authorize: ConfigurationError that says why the dashboard is never open by default."""
    with pytest.raises(ConfigurationError, match=r"authorize=.*never open by default"):
        Dashboard(history.queue())


@pytest.mark.parametrize(
    "verdict",
    [False, None, 1, "yes"],
    ids=["false", "none", "truthy-int", "truthy-str"],
)
def test_anything_but_true_from_authorize_is_403(history: History, verdict: object) -> None:
    """Only ``True`` lets a request in; the 403 page shows no history."""
    app = dashboard(history, authorize=lambda request: verdict)
    for method, path in (("GET", "/"), ("GET", f"/delivery/{history.dead[0]}")):
        page = call_wsgi(app.wsgi, method, path)
        assert page.status == 403
        assert history.dead[0] not in page.body and "order.refunded" not in page.body


def test_authorize_that_raises_or_is_async_refuses(history: History) -> None:
    """An exception or a coroutine from authorize (an async function by mistake) means 403."""

    def broken(request: RequestInfo) -> bool:
        raise RuntimeError("session store down")

    async def coroutine(request: RequestInfo) -> bool:
        return True

    for authorize in (broken, coroutine):
        app = dashboard(history, authorize=authorize)
        assert call_wsgi(app.wsgi).status == 403


def test_authorize_is_asked_before_a_replay_post_is_read(fresh: History) -> None:
    """A refused POST is answered 403 and replays nothing, token or not."""
    app = dashboard(fresh, authorize=lambda request: request.method == "GET")
    token = csrf_cookie(call_wsgi(app.wsgi))
    page = call_wsgi(
        app.wsgi,
        "POST",
        f"/delivery/{fresh.dead[0]}/replay",
        headers={"Cookie": f"{CSRF_COOKIE}={token}"},
        body=urlencode({"csrf": token, "back": "detail"}).encode(),
    )
    assert page.status == 403
    record = fresh.queue().get(fresh.dead[0])
    assert record is not None and record.status == "dead"


def test_authorize_gets_the_request(history: History) -> None:
    """authorize sees method, path below the mount, client address, headers and the environ."""
    seen: list[RequestInfo] = []
    app = dashboard(history, authorize=lambda request: seen.append(request) is None)
    call_wsgi(
        app.wsgi,
        path="/delivery/abc",
        script_name=PREFIX,
        headers={"X-Forwarded-User": "ada"},
        remote_addr="10.1.2.3",
    )
    (request,) = seen
    assert (request.method, request.path, request.base) == ("GET", "/delivery/abc", PREFIX)
    assert request.remote_addr == "10.1.2.3"
    assert request.header("x-forwarded-user") == "ada"
    assert request.native["SCRIPT_NAME"] == PREFIX


@pytest.mark.parametrize(
    ("remote", "host", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1:8089", True),
        ("127.0.0.1", "localhost:8089", True),
        ("::1", "[::1]:8089", True),
        ("::ffff:127.0.0.1", "127.0.0.1:8089", True),
        ("127.0.0.1", None, True),
        ("192.168.1.20", "127.0.0.1:8089", False),
        ("127.0.0.1", "attacker.example:8089", False),
        ("127.0.0.1", "10.0.0.5:8089", False),
        (None, "127.0.0.1:8089", False),
    ],
)
def test_loopback_only_wants_a_loopback_client_and_host(
    remote: str | None, host: str | None, allowed: bool
) -> None:
    """Loopback client and loopback Host header (a rebinding page's requests carry its name)."""
    headers = Headers({"host": host} if host else {})
    request = RequestInfo("GET", "/", headers=headers, remote_addr=remote)
    assert loopback_only(request) is allowed


# -- the list page ---------------------------------------------------------------------------


def test_the_list_shows_failed_first_by_default(history: History) -> None:
    """Rejected, retrying and dead rows come before queued and processed, newest first in each."""
    page = call_wsgi(dashboard(history).wsgi)
    assert page.status == 200
    shown = statuses(page)
    failed = {"rejected", "retrying", "dead"}
    first_settled = next(i for i, s in enumerate(shown) if s not in failed)
    assert set(shown[:first_settled]) == failed
    assert not failed & set(shown[first_settled:])
    assert len(shown) == 2 + 2 + 1 + 7 + 1
    assert shown[:first_settled].count("dead") == 2
    times = re.findall(r'<time datetime="([^"]+)"', page.body)[:first_settled]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("dead", {"dead"}),
        ("retrying", {"retrying"}),
        ("processed", {"processed"}),
        ("queued", {"queued"}),
        ("rejected", {"rejected"}),
        ("failed", {"rejected", "retrying", "dead"}),
    ],
)
def test_the_status_filter_shows_only_that_status(
    history: History, status: str, expected: set[str]
) -> None:
    """?status=... lists exactly the rows in that status (failed: rejected + retrying + dead)."""
    page = call_wsgi(dashboard(history).wsgi, query=f"status={status}")
    assert page.status == 200
    assert set(statuses(page)) == expected
    assert f'<option value="{status}" selected>' in page.body


def test_rejected_rows_show_reason_code_and_hint(history: History) -> None:
    """A rejection row names its reason code and the hint (never shown to the sender)."""
    page = call_wsgi(dashboard(history).wsgi, query="status=rejected")
    assert page.body.count('<code class="reason">signature_mismatch</code>') == history.rejected
    assert "matches the raw body under none of the" in page.body


def test_the_endpoint_filter(history: History) -> None:
    """?endpoint=billing lists billing rows only; the menu offers every endpoint seen."""
    app = dashboard(history)
    page = call_wsgi(app.wsgi, query="endpoint=billing")
    assert set(statuses(page)) == {"processed", "retrying", "rejected"}
    assert "order." not in page.body
    assert '<option value="billing" selected>' in page.body
    assert '<option value="shop">' in page.body


def test_the_since_filter(history: History) -> None:
    """?since=1h keeps what arrived in the last hour only (the newest 3 of 13 rows)."""
    page = call_wsgi(dashboard(history).wsgi, query="since=1h")
    assert set(row_ids(page)) == {history.queued[0], *history.processed[-2:]}


@pytest.mark.parametrize(
    "query",
    ["status=bogus", "since=yesterday", "limit=0", "limit=x", "endpoint=" + "e" * 201, "x=1&" * 30],
)
def test_a_bad_filter_is_400_and_says_which(history: History, query: str) -> None:
    """An unknown status, duration or limit answers 400 naming the filter."""
    page = call_wsgi(dashboard(history).wsgi, query=query)
    assert page.status == 400
    assert query.split("=")[0] in page.body or "too many query parameters" in page.body


def test_limit_caps_the_rows_and_says_so(history: History) -> None:
    """?limit=3 shows 3 rows, failed first, and says how to see more."""
    page = call_wsgi(dashboard(history).wsgi, query="limit=3")
    assert statuses(page) == ["rejected", "dead", "retrying"]
    assert "Showing the newest 3" in page.body


def test_the_chart_has_a_bar_per_status_present(history: History) -> None:
    """The SVG has bars for each status in the window, none for absent ones, and totals."""
    app = dashboard(history)
    page = call_wsgi(app.wsgi)
    svg = page.body[page.body.index("<svg") : page.body.index("</svg>")]
    drawn = set(re.findall(r'<rect class="bar" data-status="([a-z]+)"', svg))
    assert drawn == {"processed", "dead", "retrying", "queued", "rejected"}
    assert 'data-status="processing"' not in svg
    assert '<b data-total="processed">7</b>' in page.body
    assert '<b data-total="rejected">2</b>' in page.body
    # Filtered to billing: only billing's statuses are drawn.
    billing = call_wsgi(app.wsgi, query="endpoint=billing").body
    assert set(re.findall(r'<rect class="bar" data-status="([a-z]+)"', billing)) == {
        "processed",
        "retrying",
        "rejected",
    }


def test_the_chart_window_picks_round_bars() -> None:
    """12 to 48 bars of a round width; the last bar holds now."""
    window = ChartWindow.choose(NOW, 6 * 3600, [])
    assert (window.bucket, window.bars) == (900, 25)
    assert window.start <= NOW - 6 * 3600 < window.start + window.bucket
    assert window.start + window.bars * window.bucket > NOW
    assert ChartWindow.choose(NOW, None, [NOW - 30]).bars == 12
    assert ChartWindow.choose(NOW, 30 * 86400, []).bucket == 86400


def test_an_empty_history_says_so(tmp_path: Path) -> None:
    """No rows: a sentence instead of an empty table, and an empty chart."""
    from webhook_guard.queues.sqlite import SQLiteQueue

    page = call_wsgi(Dashboard(SQLiteQueue(tmp_path / "empty.db"), authorize=allow).wsgi)
    assert page.status == 200
    assert "No deliveries or rejected requests match" in page.body
    assert "nothing received in this window" in page.body


# -- the detail page -------------------------------------------------------------------------


def test_the_detail_page_shows_status_attempts_tracebacks_headers_and_body(
    history: History,
) -> None:
    """Status, every attempt with its traceback, the stored headers and the body."""
    page = call_wsgi(dashboard(history).wsgi, path=f"/delivery/{history.hostile}")
    assert page.status == 200
    assert f"<code>{history.hostile}</code>" in page.body
    assert ">dead</span>" in page.body
    assert page.body.count("<summary>Traceback</summary>") == 2
    assert "KeyError: &#x27;customer_id&#x27;" in page.body
    assert "Traceback (most recent call last)" in page.body
    assert "<th>user-agent</th><td><code>ShopSender/2.1</code>" in page.body
    assert "&quot;event&quot;: &quot;order.note&quot;" in page.body
    assert "Replay</button>" in page.body


def test_a_retrying_delivery_shows_its_next_attempt(history: History) -> None:
    """A retrying delivery says when it runs next and why it failed."""
    page = call_wsgi(dashboard(history).wsgi, path=f"/delivery/{history.retrying[0]}")
    assert "Next attempt" in page.body
    assert "the order service is busy (429)" in page.body


def test_unknown_or_prefix_ids_are_404(history: History) -> None:
    """Only a full delivery id has a page (a prefix would make URLs ambiguous)."""
    app = dashboard(history)
    assert call_wsgi(app.wsgi, path="/delivery/nope").status == 404
    assert call_wsgi(app.wsgi, path=f"/delivery/{history.dead[0][:8]}").status == 404
    assert call_wsgi(app.wsgi, path="/elsewhere").status == 404


def test_credential_headers_are_never_shown() -> None:
    """Even a stored Authorization or Cookie header (an old row) is left out of the page."""

    class OldRows:
        record = DeliveryRecord(
            id="d1",
            endpoint="shop",
            scheme="github",
            event_type="push",
            dedupe_key=None,
            received_at=NOW,
            status="dead",
            attempts=1,
            run_at=NOW,
            last_error="boom",
            updated_at=NOW,
            body_size=2,
            body_sha256="00",
            headers=(("authorization", "Bearer sk_live_x"), ("cookie", "s=1"), ("x-a", "b")),
            body=b"{}",
        )

        def deliveries(self, **kwargs: Any) -> list[DeliveryRecord]:
            return [self.record]

        def rejections(self, **kwargs: Any) -> list[RejectionRecord]:
            return []

        def get(self, delivery_id: str) -> DeliveryRecord | None:
            return self.record if delivery_id == "d1" else None

    app = Dashboard(OldRows(), authorize=allow, allow_replay=False)  # type: ignore[arg-type]
    page = call_wsgi(app.wsgi, path="/delivery/d1")
    assert page.status == 200
    assert "sk_live_x" not in page.body and "s=1" not in page.body
    assert "<th>x-a</th>" in page.body


# -- escaping and headers --------------------------------------------------------------------


def test_script_in_a_body_or_header_is_escaped_everywhere(history: History) -> None:
    """An attacker's <script> in the body or a header appears escaped, never as markup."""
    app = dashboard(history)
    for path, query in (("/", ""), ("/", "status=dead"), (f"/delivery/{history.hostile}", "")):
        page = call_wsgi(app.wsgi, path=path, query=query)
        assert "<script" not in page.body.lower()
    detail = call_wsgi(app.wsgi, path=f"/delivery/{history.hostile}").body
    assert "&lt;script&gt;alert(&#x27;body&#x27;)&lt;/script&gt;" in detail
    assert "&lt;script&gt;alert(&#x27;header&#x27;)&lt;/script&gt;" in detail
    assert SCRIPT not in detail and HEADER_SCRIPT not in detail


def test_filter_values_are_escaped(history: History) -> None:
    """A crafted endpoint filter is echoed escaped, attributes included."""
    page = call_wsgi(dashboard(history).wsgi, query=urlencode({"endpoint": '"><script>x'}))
    assert "<script" not in page.body
    assert "&quot;&gt;&lt;script&gt;x" in page.body


def test_every_answer_carries_the_security_headers(history: History) -> None:
    """CSP without script, no framing, no referrer, no caching: on 200, 400, 403, 404, 405."""
    app = dashboard(history)
    answers = [
        call_wsgi(app.wsgi),
        call_wsgi(app.wsgi, query="status=bogus"),
        call_wsgi(dashboard(history, authorize=lambda r: False).wsgi),
        call_wsgi(app.wsgi, path="/nope"),
        call_wsgi(app.wsgi, "POST", "/"),
    ]
    assert [a.status for a in answers] == [200, 400, 403, 404, 405]
    for answer in answers:
        for name, value in SECURITY_HEADERS:
            assert answer.header(name) == value
    csp = answers[0].header("Content-Security-Policy")
    assert csp == "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"
    assert answers[0].header("X-Frame-Options") == "DENY"
    assert answers[0].header("Referrer-Policy") == "no-referrer"


def test_head_answers_headers_only(history: History) -> None:
    """HEAD: the GET status and headers, no body."""
    page = call_wsgi(dashboard(history).wsgi, "HEAD")
    assert page.status == 200 and page.body == ""


# -- mount prefix ----------------------------------------------------------------------------


def test_links_forms_and_cookie_follow_the_mount_prefix(history: History) -> None:
    """Mounted at /admin/webhooks/ (SCRIPT_NAME), every link, form and the cookie path use it."""
    app = dashboard(history)
    page = call_wsgi(app.wsgi, script_name=PREFIX)
    hrefs = re.findall(r'(?:href|action)="([^"]+)"', page.body)
    assert hrefs and all(h.startswith(PREFIX + "/") or h.startswith("data:") for h in hrefs)
    assert f'href="{PREFIX}/delivery/{history.dead[0]}"' in page.body
    assert f'action="{PREFIX}/delivery/{history.dead[0]}/replay"' in page.body
    assert f"Path={PREFIX}/;" in (page.header("Set-Cookie") or "")
    detail = call_wsgi(app.wsgi, path=f"/delivery/{history.dead[0]}", script_name=PREFIX)
    assert f'href="{PREFIX}/"' in detail.body


def test_at_the_root_links_start_at_slash(history: History) -> None:
    """Served at / (the CLI), links are /delivery/... and the cookie path is /."""
    page = call_wsgi(dashboard(history).wsgi)
    assert f'href="/delivery/{history.dead[0]}"' in page.body
    assert "Path=/;" in (page.header("Set-Cookie") or "")


# -- replay and CSRF -------------------------------------------------------------------------


def replay(
    app: Dashboard,
    delivery_id: str,
    *,
    cookie: str | None,
    field: str | None,
    back: str = "detail",
    script_name: str = "",
    headers: dict[str, str] | None = None,
) -> WSGIResult:
    form = {"back": back, **({"csrf": field} if field is not None else {})}
    sent = dict(headers or {})
    if cookie is not None:
        sent["Cookie"] = f"other=1; {CSRF_COOKIE}={cookie}"
    return call_wsgi(
        app.wsgi,
        "POST",
        f"/delivery/{delivery_id}/replay",
        script_name=script_name,
        headers=sent,
        body=urlencode(form).encode(),
    )


def test_replay_with_the_token_requeues_and_redirects_303(fresh: History) -> None:
    """Cookie and field match: the dead delivery is queued again, 303 back to its page."""
    app = dashboard(fresh)
    token = csrf_cookie(call_wsgi(app.wsgi, script_name=PREFIX))
    dead = fresh.dead[0]
    answer = replay(app, dead, cookie=token, field=token, script_name=PREFIX)
    assert answer.status == 303
    assert answer.header("Location") == f"{PREFIX}/delivery/{dead}?replayed=1"
    record = fresh.queue().get(dead)
    assert record is not None and (record.status, record.attempts) == ("queued", 0)
    after = call_wsgi(app.wsgi, path=f"/delivery/{dead}", query="replayed=1", script_name=PREFIX)
    assert "Queued again" in after.body


def test_replay_from_the_list_returns_to_the_same_filters(fresh: History) -> None:
    """From a filtered list, the redirect keeps the filters and names the replayed delivery."""
    app = dashboard(fresh)
    token = csrf_cookie(call_wsgi(app.wsgi))
    answer = replay(
        app, fresh.retrying[0], cookie=token, field=token, back="?status=failed&since=7d"
    )
    assert answer.status == 303
    expected = f"/?status=failed&since=7d&replayed={fresh.retrying[0]}"
    assert answer.header("Location") == expected
    page = call_wsgi(app.wsgi, query=f"status=failed&since=7d&replayed={fresh.retrying[0]}")
    assert "was queued again" in page.body


def test_a_crafted_notice_is_not_shown(history: History) -> None:
    """?replayed= echoes only an id-shaped value, so a link cannot put a sentence on the page."""
    query = urlencode({"replayed": "Your session expired, log in at evil.example"})
    page = call_wsgi(dashboard(history).wsgi, query=query)
    assert page.status == 200 and "evil.example" not in page.body


@pytest.mark.parametrize(
    ("cookie", "field"),
    [
        (None, None),
        ("t" * 43, None),
        (None, "t" * 43),
        ("t" * 43, "u" * 43),
        ("", ""),
        ("short", "short"),
    ],
    ids=["neither", "no-field", "no-cookie", "mismatch", "empty", "malformed"],
)
def test_replay_without_a_matching_token_is_403(
    fresh: History, cookie: str | None, field: str | None
) -> None:
    """A missing, mismatched or malformed CSRF token: 403, and nothing is replayed."""
    app = dashboard(fresh)
    answer = replay(app, fresh.dead[0], cookie=cookie, field=field)
    assert answer.status == 403
    assert "security token" in answer.body
    record = fresh.queue().get(fresh.dead[0])
    assert record is not None and record.status == "dead"


def test_a_cross_site_replay_is_403_even_with_the_token(fresh: History) -> None:
    """Sec-Fetch-Site: cross-site (a form on another site) is refused."""
    app = dashboard(fresh)
    token = csrf_cookie(call_wsgi(app.wsgi))
    answer = replay(
        app, fresh.dead[0], cookie=token, field=token, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert answer.status == 403
    record = fresh.queue().get(fresh.dead[0])
    assert record is not None and record.status == "dead"


def test_a_form_that_is_not_urlencoded_is_415(fresh: History) -> None:
    """The Replay form is urlencoded, as a browser sends it; anything else is 415."""
    app = dashboard(fresh)
    answer = call_wsgi(
        app.wsgi,
        "POST",
        f"/delivery/{fresh.dead[0]}/replay",
        headers={"Content-Type": "application/json"},
        body=b'{"csrf": "x"}',
    )
    assert answer.status == 415


def test_replay_of_an_unknown_delivery_is_404(fresh: History) -> None:
    """A valid token for an id that does not exist: 404."""
    app = dashboard(fresh)
    token = csrf_cookie(call_wsgi(app.wsgi))
    assert replay(app, "f" * 32, cookie=token, field=token).status == 404


def test_replay_needs_post_and_the_list_needs_get(fresh: History) -> None:
    """GET on a replay URL and POST on the list: 405 with Allow."""
    app = dashboard(fresh)
    answer = call_wsgi(app.wsgi, path=f"/delivery/{fresh.dead[0]}/replay")
    assert (answer.status, answer.header("Allow")) == (405, "POST")
    assert call_wsgi(app.wsgi, "POST", "/").header("Allow") == "GET"


def test_an_oversized_form_is_413(fresh: History) -> None:
    """A POST body over the form cap is refused before it is read."""
    app = dashboard(fresh)
    answer = call_wsgi(app.wsgi, "POST", f"/delivery/{fresh.dead[0]}/replay", body=b"x" * 9000)
    assert answer.status == 413


def test_read_only_has_no_replay_buttons_and_refuses_replay(fresh: History) -> None:
    """allow_replay=False: no Replay button anywhere, and a POST is 403 even with the token."""
    app = dashboard(fresh, allow_replay=False)
    page = call_wsgi(app.wsgi)
    detail = call_wsgi(app.wsgi, path=f"/delivery/{fresh.dead[0]}")
    assert "Replay</button>" not in page.body + detail.body
    token = csrf_cookie(page)
    assert replay(app, fresh.dead[0], cookie=token, field=token).status == 403


def test_an_existing_token_is_kept(history: History) -> None:
    """A page requested with a valid cookie sets no new one and uses it in its forms."""
    app = dashboard(history)
    token = csrf_cookie(call_wsgi(app.wsgi))
    page = call_wsgi(app.wsgi, headers={"Cookie": f"{CSRF_COOKIE}={token}"})
    assert page.header("Set-Cookie") is None
    assert f'name="csrf" value="{token}"' in page.body


def test_the_cookie_is_strict_httponly_and_secure_over_https(history: History) -> None:
    """SameSite=Strict and HttpOnly always; Secure when the request came over https."""
    app = dashboard(history)
    cookie = call_wsgi(app.wsgi).header("Set-Cookie") or ""
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie and "Secure" not in cookie
    environ_https: list[str] = []

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        environ_https.extend(v for k, v in headers if k == "Set-Cookie")

    import io

    app.wsgi(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(),
        },
        start,
    )
    assert environ_https and environ_https[0].endswith("; Secure")


# -- ASGI, without a framework ---------------------------------------------------------------


def test_the_asgi_app_follows_root_path(history: History) -> None:
    """Called as ASGI with root_path=/admin/webhooks, it answers the page with prefixed links."""
    app = dashboard(history)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": f"{PREFIX}/delivery/{history.dead[0]}",
        "root_path": PREFIX,
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
    }
    asyncio.run(app.asgi(scope, receive, send))
    assert sent[0]["status"] == 200
    body = sent[1]["body"].decode()
    assert f'href="{PREFIX}/"' in body and history.dead[0] in body


def test_filters_round_trip_through_the_query_string() -> None:
    """Filters.to_query is read back by Filters.from_query; defaults are left out."""
    filters = Filters(status="dead", endpoint="a b&c", since="24h", limit=20)
    assert Filters.from_query(filters.to_query()) == filters
    assert Filters().to_query() == ""


def test_the_dashboard_imports_no_framework() -> None:
    """webhook_guard.dashboard (and its server) loads no web framework: stdlib only."""
    code = (
        "import sys, json, webhook_guard.dashboard, webhook_guard.dashboard.server; "
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code])))
    assert loaded.isdisjoint({"flask", "werkzeug", "django", "starlette", "fastapi", "jinja2"})


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]),
    path=st.one_of(
        st.text(max_size=40).map(lambda s: "/" + s),
        st.text(max_size=20).map(lambda s: f"/delivery/{s}"),
        st.text(max_size=20).map(lambda s: f"/delivery/{s}/replay"),
    ),
    query=st.text(max_size=60),
    body=st.binary(max_size=200),
)
def test_nothing_a_client_sends_makes_it_crash(
    history: History, method: str, path: str, query: str, body: bytes
) -> None:
    """Any method, path, query or form body gets a 2xx/3xx/4xx page, never an exception."""
    app = dashboard(history)  # no CSRF cookie is sent: nothing can be replayed
    wire_path = path.encode("utf-8", "surrogatepass").decode("latin-1")
    wire_query = query.encode("utf-8", "surrogatepass").decode("latin-1")
    answer = call_wsgi(app.wsgi, method, wire_path, query=wire_query, body=body)
    assert answer.status in (200, 303, 400, 403, 404, 405, 413, 415)
