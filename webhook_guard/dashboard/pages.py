"""The dashboard's HTML, rendered on the server from a history reader: no JavaScript at all.

- The list page: filters (status, endpoint, since), failed rows first by default, a stacked SVG
  bar chart of deliveries per status over time, a Replay button on failed deliveries.
- The detail page: one delivery's facts, every attempt with its traceback, the headers as stored
  (credential headers were never stored; they are filtered again here all the same) and an
  escaped preview of the body.

Everything shown came from a sender, and a sender may be an attacker: every value goes through
``escape`` (``html.escape`` with quotes) on its way into the page, attributes included.

This module imports only the standard library and webhook_guard's core and history code.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, quote, urlencode

from webhook_guard.core.headers import is_credential_header
from webhook_guard.history import utc_time
from webhook_guard.queues.sqlite import FAILED_STATUSES, STATUSES

if TYPE_CHECKING:
    from webhook_guard.queues.sqlite import DeliveryRecord, RejectionRecord

__all__ = [
    "STATUS_ORDER",
    "BadFilter",
    "Filters",
    "HistorySource",
    "PageContext",
    "Row",
    "chart_svg",
    "collect_rows",
    "detail_page",
    "error_page",
    "list_page",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
BODY_PREVIEW_BYTES = 4096
# The chart counts at most this many of the newest deliveries and rejections in its window.
CHART_SAMPLE = 5000
CHART_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
CHART_MIN_BARS, CHART_MAX_BARS = 12, 48
SINCE_CHOICES = ("15m", "1h", "6h", "24h", "7d", "30d")

# Failed (from the sender's side) first: the order of the status menu, the chart's legend and
# of the default list.
FAILED = ("rejected", *FAILED_STATUSES)
STATUS_ORDER = ("rejected", "dead", "retrying", "queued", "processing", "processed")
ALL_STATUSES = frozenset((*STATUSES, "rejected"))
COLORS = {
    "rejected": "#d9480f",
    "dead": "#c92a2a",
    "retrying": "#e8a317",
    "queued": "#868e96",
    "processing": "#1c7ed6",
    "processed": "#2b8a3e",
}
# Attempt outcomes besides the statuses: "failed" (retried later), "running" (not finished).
_OUTCOME_COLORS = {"failed": COLORS["retrying"], "running": COLORS["processing"]}
_NONE = "&ndash;"  # shown for an empty value; already HTML
_SINCE = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class HistorySource(Protocol):
    """What the pages read: ``SQLiteQueue`` (and any history reader with these methods)."""

    def deliveries(
        self,
        *,
        statuses: tuple[str, ...] = (),
        since: float | None = None,
        endpoint: str | None = None,
        limit: int = 50,
    ) -> list[DeliveryRecord]:
        """Accepted deliveries, newest first."""
        ...

    def rejections(
        self, *, since: float | None = None, endpoint: str | None = None, limit: int = 50
    ) -> list[RejectionRecord]:
        """Rejected requests, newest first."""
        ...

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery with its headers, body and attempts."""
        ...


class BadFilter(ValueError):
    """A query-string filter value the list page does not understand (answered with 400)."""


@dataclass(frozen=True)
class Filters:
    """The list page's filters, as they travel in its query string.

    ``status``: ``""`` (everything, failed first), ``"failed"`` (rejected, retrying and dead),
    ``"rejected"`` or a delivery status. ``since``: a duration such as ``15m``, ``24h``, ``7d``.
    """

    status: str = ""
    endpoint: str = ""
    since: str = ""
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_query(cls, query: str) -> Filters:
        try:
            values = dict(parse_qsl(query, keep_blank_values=True, max_num_fields=20))
        except ValueError:  # more fields than that
            raise BadFilter("too many query parameters") from None
        status = values.get("status", "")
        if status not in ("", "failed", *ALL_STATUSES):
            raise BadFilter(f"unknown status {status[:40]!r}")
        since = values.get("since", "").strip()
        if since and not _SINCE.match(since):
            raise BadFilter(f"since must be a duration like 15m, 24h or 7d, not {since[:40]!r}")
        endpoint = values.get("endpoint", "")
        if len(endpoint) > 200:
            raise BadFilter("endpoint is longer than 200 characters")
        try:
            limit = int(values.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            raise BadFilter("limit must be a number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadFilter(f"limit must be between 1 and {MAX_LIMIT}")
        return cls(status=status, endpoint=endpoint, since=since, limit=limit)

    def to_query(self) -> str:
        """The non-default filters as a query string (without ``?``)."""
        pairs = [
            (name, value)
            for name, value in (
                ("status", self.status),
                ("endpoint", self.endpoint),
                ("since", self.since),
            )
            if value
        ]
        if self.limit != DEFAULT_LIMIT:
            pairs.append(("limit", str(self.limit)))
        return urlencode(pairs)

    def since_seconds(self) -> float | None:
        """The ``since`` filter in seconds, None when unset."""
        match = _SINCE.match(self.since)
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else None


@dataclass(frozen=True)
class PageContext:
    """What every page needs besides its data.

    ``base`` is the URL path the dashboard is mounted at, percent-encoded, without a trailing
    slash (``""`` at the root, ``"/admin/webhooks"`` when mounted there).
    """

    base: str
    csrf_token: str
    allow_replay: bool
    now: float

    def url(self, path: str = "/", query: str = "") -> str:
        """A link to this dashboard's ``path`` with ``query``, under its mount point."""
        return self.base + path + ("?" + query if query else "")

    def delivery_url(self, delivery_id: str, suffix: str = "") -> str:
        """The link to one delivery's page."""
        return self.url(f"/delivery/{quote(delivery_id, safe='')}{suffix}")


@dataclass(frozen=True)
class Row:
    """One line of the list: an accepted delivery or a rejected request."""

    kind: str  # "delivery" or "rejection"
    id: str
    time: float
    endpoint: str
    event: str
    status: str
    attempts: int
    detail: str  # the last error of a delivery, the hint of a rejection
    reason: str = ""  # a rejection's reason code

    @property
    def is_failed(self) -> bool:
        """True for what failed from the sender's side (rejected, retrying, dead)."""
        return self.status in FAILED


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


# -- data ------------------------------------------------------------------------------------


def collect_rows(source: HistorySource, filters: Filters, now: float) -> list[Row]:
    """The rows the list shows: failed ones first (newest first within each group) unless a
    status is chosen, then newest first."""
    seconds = filters.since_seconds()
    since = None if seconds is None else now - seconds
    endpoint = filters.endpoint or None
    limit = filters.limit
    if filters.status == "":
        groups = [_fetch(source, FAILED, since, endpoint, limit)]
        rest = tuple(s for s in STATUSES if s not in FAILED)
        groups.append(_fetch(source, rest, since, endpoint, limit))
        return [row for group in groups for row in group][:limit]
    wanted = FAILED if filters.status == "failed" else (filters.status,)
    return _fetch(source, wanted, since, endpoint, limit)


def _fetch(
    source: HistorySource,
    statuses: tuple[str, ...],
    since: float | None,
    endpoint: str | None,
    limit: int,
) -> list[Row]:
    rows: list[Row] = []
    delivery_statuses = tuple(s for s in statuses if s != "rejected")
    if delivery_statuses:
        rows += [
            _delivery_row(d)
            for d in source.deliveries(
                statuses=delivery_statuses, since=since, endpoint=endpoint, limit=limit
            )
        ]
    if "rejected" in statuses:
        rows += [
            _rejection_row(r)
            for r in source.rejections(since=since, endpoint=endpoint, limit=limit)
        ]
    rows.sort(key=lambda row: row.time, reverse=True)
    return rows[:limit]


def _delivery_row(d: DeliveryRecord) -> Row:
    return Row(
        "delivery",
        d.id,
        d.received_at,
        d.endpoint,
        d.event_type or "",
        d.status,
        d.attempts,
        d.last_error or "",
    )


def _rejection_row(r: RejectionRecord) -> Row:
    return Row(
        "rejection", f"r{r.id}", r.received_at, r.endpoint, "", "rejected", 0, r.hint, r.reason
    )


def chart_samples(
    source: HistorySource, filters: Filters, now: float
) -> list[tuple[float, str, str]]:
    """``(time, status, endpoint)`` of the newest deliveries and rejections in the filters'
    window, every status and every endpoint: the chart shows all statuses whatever the status
    filter, and the endpoint menu offers every endpoint seen."""
    seconds = filters.since_seconds()
    since = None if seconds is None else now - seconds
    samples = [
        (d.received_at, d.status, d.endpoint)
        for d in source.deliveries(since=since, limit=CHART_SAMPLE)
    ]
    samples += [
        (r.received_at, "rejected", r.endpoint)
        for r in source.rejections(since=since, limit=CHART_SAMPLE)
    ]
    return samples


# -- the chart -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartWindow:
    start: float
    bucket: int  # seconds per bar
    bars: int

    @classmethod
    def choose(cls, now: float, since_seconds: float | None, times: Iterable[float]) -> ChartWindow:
        """Bars of a round width (1 min ... 1 week), 12 to 48 of them, the last one holding now."""
        earliest = min(times, default=now - 3600)
        first = now - since_seconds if since_seconds is not None else earliest
        span = max(now - first, 1.0)
        bucket = next((b for b in CHART_BUCKETS if span / b <= CHART_MAX_BARS), CHART_BUCKETS[-1])
        end = (math.floor(now / bucket) + 1) * bucket
        bars = min(CHART_MAX_BARS * 2, max(CHART_MIN_BARS, math.ceil((end - first) / bucket)))
        return cls(end - bars * bucket, bucket, bars)

    def label(self) -> str:
        return f"from {_clock(self.start, self.bucket)} UTC, one bar per {_duration(self.bucket)}"


def chart_svg(samples: list[tuple[float, str, str]], window: ChartWindow) -> str:
    """Stacked bars, one per time bucket, a segment per status; each segment has a tooltip."""
    counts = [dict.fromkeys(STATUS_ORDER, 0) for _ in range(window.bars)]
    for when, status, _ in samples:
        if when < window.start or status not in COLORS:
            continue
        index = min(int((when - window.start) // window.bucket), window.bars - 1)
        counts[index][status] += 1
    width, height, left, right, top, bottom = 960, 190, 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((sum(c.values()) for c in counts), default=0)
    scale_max = _nice_ceiling(peak)
    slot = plot_w / window.bars
    bar_w = max(1.0, slot * 0.78)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="Deliveries per status, {window.label()}">'
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h - fraction * plot_h
        value = scale_max * fraction
        label = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
        )
    # Bottom to top: settled first, failures on top where the eye lands.
    stack_order = tuple(reversed(STATUS_ORDER))
    for index, bucket_counts in enumerate(counts):
        x = left + index * slot + (slot - bar_w) / 2
        y = top + plot_h
        bucket_start = window.start + index * window.bucket
        span = (
            f"{_clock(bucket_start, window.bucket)} to "
            f"{_clock(bucket_start + window.bucket, window.bucket)}"
        )
        for status in stack_order:
            count = bucket_counts[status]
            if not count:
                continue
            h = count / scale_max * plot_h
            y -= h
            parts.append(
                f'<rect class="bar" data-status="{status}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}" fill="{COLORS[status]}">'
                f"<title>{count} {status}, {escape(span)} UTC</title></rect>"
            )
    # Time labels at the left edge, the middle and the right edge (the right one is now).
    ticks = (
        (left, window.start, "start"),
        (left + plot_w / 2, window.start + window.bars * window.bucket / 2, "middle"),
        (left + plot_w, window.start + window.bars * window.bucket, "end"),
    )
    for x, when, anchor in ticks:
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{height - 8}" text-anchor="{anchor}">'
            f"{escape(_clock(when, window.bucket))}</text>"
        )
    if not peak:
        parts.append(
            f'<text class="empty" x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" '
            'text-anchor="middle">nothing received in this window</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: int) -> float:
    if value <= 4:
        return 4.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _clock(when: float, bucket: int) -> str:
    fmt = "%m-%d %H:%M" if bucket < 86400 else "%Y-%m-%d"
    return time.strftime(fmt, time.gmtime(when))


def _duration(seconds: float) -> str:
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds:.0f} seconds"


# -- pages -----------------------------------------------------------------------------------


def list_page(
    source: HistorySource, filters: Filters, ctx: PageContext, *, notice: str = ""
) -> str:
    """The delivery history: filters, the chart, the rows."""
    rows = collect_rows(source, filters, ctx.now)
    everywhere = chart_samples(source, filters, ctx.now)
    endpoints = sorted({s[2] for s in everywhere} | ({filters.endpoint} - {""}))
    samples = [s for s in everywhere if not filters.endpoint or s[2] == filters.endpoint]
    window = ChartWindow.choose(ctx.now, filters.since_seconds(), (s[0] for s in samples))
    totals = dict.fromkeys(STATUS_ORDER, 0)
    for when, status, _ in samples:
        if when >= window.start and status in totals:
            totals[status] += 1
    legend = "".join(
        f'<li><span class="swatch" style="background:{COLORS[s]}"></span>{s} '
        f'<b data-total="{s}">{totals[s]}</b></li>'
        for s in STATUS_ORDER
    )
    table = (
        _rows_table(rows, filters, ctx)
        if rows
        else '<p class="empty-list">No deliveries or rejected requests match these filters.</p>'
    )
    more = (
        f'<p class="muted">Showing the newest {len(rows)}; narrow the filters or raise '
        f"<code>limit</code> to see older ones.</p>"
        if len(rows) >= filters.limit
        else ""
    )
    body = f"""
<h1>Delivery history</h1>
{_notice(notice)}
{_filter_form(filters, endpoints, ctx)}
<section class="panel">
  <h2>Deliveries per status <span class="muted">({escape(window.label())})</span></h2>
  {chart_svg(samples, window)}
  <ul class="legend">{legend}</ul>
</section>
{table}
{more}"""
    return _document("Delivery history", body, ctx)


def _filter_form(filters: Filters, endpoints: list[str], ctx: PageContext) -> str:
    status_options = [("", "all, failed first"), ("failed", "failed only")]
    status_options += [(s, s) for s in STATUS_ORDER]
    since_options = [("", "any time")] + [(s, f"last {s}") for s in SINCE_CHOICES]
    if filters.since and filters.since not in SINCE_CHOICES:
        since_options.append((filters.since, f"last {filters.since}"))
    endpoint_options = [("", "all endpoints")] + [(e, e) for e in endpoints]
    limit = (
        f'<input type="hidden" name="limit" value="{filters.limit}">'
        if filters.limit != DEFAULT_LIMIT
        else ""
    )
    return f"""
<form class="filters panel" method="get" action="{escape(ctx.url("/"))}">
  <label>Status {_select("status", status_options, filters.status)}</label>
  <label>Endpoint {_select("endpoint", endpoint_options, filters.endpoint)}</label>
  <label>Received {_select("since", since_options, filters.since)}</label>
  {limit}<button type="submit">Filter</button>
  <a class="reset" href="{escape(ctx.url("/"))}">Reset</a>
</form>"""


def _select(name: str, options: list[tuple[str, str]], chosen: str) -> str:
    items = "".join(
        f'<option value="{escape(value)}"{" selected" if value == chosen else ""}>'
        f"{escape(label)}</option>"
        for value, label in options
    )
    return f'<select name="{name}">{items}</select>'


def _rows_table(rows: list[Row], filters: Filters, ctx: PageContext) -> str:
    lines = []
    for row in rows:
        if row.kind == "delivery":
            ident = (
                f'<a href="{escape(ctx.delivery_url(row.id))}"><code>{escape(row.id[:12])}'
                "</code></a>"
            )
            detail = f'<span class="error">{escape(_clip(row.detail, 140))}</span>'
            action = (
                _replay_form(row.id, "?" + filters.to_query(), ctx)
                if row.status in FAILED_STATUSES and ctx.allow_replay
                else ""
            )
        else:
            ident = f'<code class="muted">{escape(row.id)}</code>'
            detail = (
                f'<code class="reason">{escape(row.reason)}</code> '
                f'<span class="hint">{escape(_clip(row.detail, 140))}</span>'
            )
            action = ""
        lines.append(
            f'<tr class="row{" failed" if row.is_failed else ""}" '
            f'data-status="{escape(row.status)}" data-id="{escape(row.id)}">'
            f"<td>{_time(row.time)}</td><td>{_badge(row.status)}</td>"
            f"<td>{escape(row.endpoint)}</td><td>{escape(row.event) or _NONE}</td>"
            f'<td class="num">{row.attempts}</td><td>{ident}</td><td>{detail}</td>'
            f'<td class="action">{action}</td></tr>'
        )
    return (
        '<table class="rows"><thead><tr><th>Received (UTC)</th><th>Status</th><th>Endpoint</th>'
        '<th>Event</th><th class="num">Attempts</th><th>Id</th><th>Last error / reason</th>'
        f"<th></th></tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


def _replay_form(delivery_id: str, back: str, ctx: PageContext) -> str:
    action = ctx.delivery_url(delivery_id, "/replay")
    return (
        f'<form class="replay" method="post" action="{escape(action)}">'
        f'<input type="hidden" name="csrf" value="{escape(ctx.csrf_token)}">'
        f'<input type="hidden" name="back" value="{escape(back)}">'
        '<button type="submit">Replay</button></form>'
    )


def detail_page(record: DeliveryRecord, ctx: PageContext, *, notice: str = "") -> str:
    """One delivery: facts, Replay, attempts with tracebacks, headers, the body (escaped)."""
    facts = [
        ("Status", _badge(record.status)),
        ("Endpoint", escape(record.endpoint)),
        ("Event", escape(record.event_type) if record.event_type else _NONE),
        ("Scheme", escape(record.scheme)),
        ("Received", _time(record.received_at) + " UTC"),
        ("Attempts", str(record.attempts)),
        ("Dedupe key", f"<code>{escape(record.dedupe_key)}</code>" if record.dedupe_key else _NONE),
    ]
    if record.status == "retrying":
        facts.append(("Next attempt", _time(record.run_at) + " UTC"))
    if record.last_error:
        facts.append(("Last error", f'<span class="error">{escape(record.last_error)}</span>'))
    sha = f"<code>{escape(record.body_sha256)}</code>"
    facts.append(("Body", f"{record.body_size} bytes, sha256 {sha}"))
    fact_list = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    replay = ""
    if ctx.allow_replay and record.status not in ("queued", "processing"):
        replay = (
            '<section class="panel replay-panel"><p>Replay queues this delivery again with a '
            "fresh attempt budget; a running worker runs its handlers again.</p>"
            f"{_replay_form(record.id, 'detail', ctx)}</section>"
        )
    body = f"""
<p><a href="{escape(ctx.url("/"))}">&larr; Delivery history</a></p>
<h1>Delivery <code>{escape(record.id)}</code></h1>
{_notice(notice)}
<section class="panel"><dl class="facts">{fact_list}</dl></section>
{replay}
<h2>Attempts</h2>
{_attempts(record)}
<h2>Headers <span class="muted">(as stored; credential headers are never stored)</span></h2>
{_headers(record)}
<h2>Body <span class="muted">({_preview_note(record)})</span></h2>
<pre class="body">{escape(_body_preview(record.body))}</pre>"""
    return _document(f"Delivery {record.id[:12]}", body, ctx)


def _attempts(record: DeliveryRecord) -> str:
    if not record.attempt_log:
        return '<p class="muted">No attempt yet.</p>'
    items = []
    for a in record.attempt_log:
        took = (
            f"{(a.finished_at - a.started_at) * 1000:.0f} ms"
            if a.finished_at is not None
            else _NONE
        )
        trace = (
            f"<details><summary>Traceback</summary><pre>{escape(a.traceback)}</pre></details>"
            if a.traceback
            else ""
        )
        items.append(
            f'<tr><td class="num">{a.attempt}</td><td>{_time(a.started_at)}</td><td>{took}</td>'
            f"<td>{_badge(a.outcome or 'running')}</td>"
            f'<td><span class="error">{escape(a.error or "")}</span>{trace}</td></tr>'
        )
    return (
        '<table class="rows attempts"><thead><tr><th class="num">#</th><th>Started (UTC)</th>'
        "<th>Took</th><th>Outcome</th><th>Error</th></tr></thead>"
        f"<tbody>{''.join(items)}</tbody></table>"
    )


def _headers(record: DeliveryRecord) -> str:
    shown = [(k, v) for k, v in record.headers if not is_credential_header(k)]
    if not shown:
        return '<p class="muted">No headers stored.</p>'
    items = "".join(
        f"<tr><th>{escape(name)}</th><td><code>{escape(value)}</code></td></tr>"
        for name, value in shown
    )
    return f'<table class="headers"><tbody>{items}</tbody></table>'


def _body_preview(body: bytes) -> str:
    if len(body) <= BODY_PREVIEW_BYTES:
        try:
            return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return body[:BODY_PREVIEW_BYTES].decode("utf-8", "replace")


def _preview_note(record: DeliveryRecord) -> str:
    if record.body_size > BODY_PREVIEW_BYTES:
        return f"the first {BODY_PREVIEW_BYTES} of {record.body_size} bytes"
    return f"{record.body_size} bytes; JSON is shown indented"


def error_page(status: int, title: str, message: str, ctx: PageContext) -> str:
    """A small HTML page for an error ``status`` with ``message``."""
    body = (
        f"<h1>{status} {escape(title)}</h1><p>{escape(message)}</p>"
        f'<p><a href="{escape(ctx.url("/"))}">&larr; Delivery history</a></p>'
    )
    return _document(title, body, ctx)


def _notice(text: str) -> str:
    return f'<p class="notice" role="status">{escape(text)}</p>' if text else ""


def _badge(status: str) -> str:
    color = COLORS.get(status) or _OUTCOME_COLORS.get(status, "#495057")
    return f'<span class="badge" style="background:{color}">{escape(status)}</span>'


def _time(when: float) -> str:
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    shown = utc_time(when)  # the CLI's format: one clock in both
    return f'<time datetime="{iso}">{shown}</time>'


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _document(title: str, body: str, ctx: PageContext) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(title)} · webhook_guard</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<header class="top"><a href="{escape(ctx.url("/"))}">webhook_guard</a>
<span class="muted">delivery history · read-only{"" if not ctx.allow_replay else " + replay"}</span>
</header>
<main>{body}
</main>
</body>
</html>
"""


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#212529;background:#f4f5f7}
main{max-width:1180px;margin:0 auto;padding:12px 20px 40px}
.top{background:#1f2933;color:#fff;padding:10px 20px;display:flex;gap:14px;align-items:baseline}
.top a{color:#fff;font-weight:600;text-decoration:none;font-size:15px}
.top .muted{color:#aab4be}
h1{font-size:20px;margin:10px 0 12px}h2{font-size:15px;margin:18px 0 8px}
.panel h2{margin:0 0 6px}
a{color:#1864ab}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.muted{color:#6c757d;font-weight:normal}
.panel{background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:10px 14px;
margin-bottom:12px}
.filters{display:flex;gap:16px;align-items:center;flex-wrap:wrap}
.filters label{display:flex;gap:6px;align-items:center;font-weight:600}
select{font:inherit;padding:3px 4px}
button{font:inherit;padding:3px 12px;border:1px solid #1864ab;background:#1c7ed6;color:#fff;
border-radius:4px;cursor:pointer}
button:hover{background:#1864ab}
.replay button{padding:1px 10px;font-size:12px;background:#fff;color:#c92a2a;
border-color:#c92a2a}
.replay button:hover{background:#fff5f5}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#e9ecef}.chart .axis{font-size:11px;fill:#6c757d}
.chart .empty{font-size:13px;fill:#adb5bd}
.legend{list-style:none;display:flex;gap:18px;padding:0;margin:4px 0 0;flex-wrap:wrap}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
table.rows{width:100%;border-collapse:collapse;background:#fff;border:1px solid #dee2e6}
.rows th,.rows td{padding:5px 8px;border-bottom:1px solid #e9ecef;text-align:left;
vertical-align:top}
.rows th{background:#f8f9fa;font-size:12px;color:#495057}
.rows tr.failed td:first-child{box-shadow:inset 3px 0 #c92a2a}
.num{text-align:right}.rows td:first-child{white-space:nowrap}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:0 8px;font-size:12px}
.error{color:#a61e4d}.reason{color:#d9480f;font-weight:600}.hint{color:#495057}
.notice{background:#e7f5ff;border:1px solid #a5d8ff;padding:8px 12px;border-radius:6px}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}
.facts dt{font-weight:600;color:#495057}.facts dd{margin:0;overflow-wrap:anywhere}
.replay-panel{display:flex;gap:16px;align-items:center}.replay-panel p{margin:0}
table.headers{border-collapse:collapse;background:#fff;border:1px solid #dee2e6}
.headers th,.headers td{padding:3px 10px;border-bottom:1px solid #e9ecef;text-align:left}
.headers td{overflow-wrap:anywhere}
pre{background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:10px;overflow:auto;
max-height:480px;white-space:pre-wrap;overflow-wrap:anywhere}
details summary{cursor:pointer;color:#1864ab;font-size:12px}
.empty-list{background:#fff;border:1px dashed #ced4da;padding:18px;text-align:center}
"""
