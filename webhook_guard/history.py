"""The delivery history as rows a person or a program reads: accepted deliveries and rejections.

"Failed" means failed from the sender's side: a rejected request (with its reason code) or an
accepted delivery that is retrying or dead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from webhook_guard.core.store import HistoryReader
from webhook_guard.queues.sqlite import FAILED_STATUSES
from webhook_guard.textsafe import printable


@dataclass(frozen=True)
class HistoryRow:
    time: float
    id: str
    endpoint: str
    event: str
    status: str
    attempts: int
    detail: str  # last error, or the rejection's reason code and hint

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data (``history --json``)."""
        return {
            "time": self.time,
            "id": self.id,
            "endpoint": self.endpoint,
            "event": self.event,
            "status": self.status,
            "attempts": self.attempts,
            "detail": self.detail,
        }


def history_rows(
    queue: HistoryReader,
    *,
    failed: bool = False,
    statuses: tuple[str, ...] = (),
    since: float | None = None,
    endpoint: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> list[HistoryRow]:
    """Newest first. ``failed`` selects rejections plus retrying and dead deliveries;
    ``statuses`` may name delivery statuses and ``rejected``; ``before`` (the ``cursor`` of the
    last row of the previous page) continues a listing, ties included."""
    bound = _parse_cursor(before) if before else None
    deliveries_before: tuple[float, str] | None = None
    rejections_before: tuple[float, int] | None = None
    if bound is not None:
        when, kind, key = bound
        # Rows sort by (time, kind, id), newest first, rejections (kind 1) before deliveries
        # at one instant: after a delivery, no rejection of that instant remains to show.
        deliveries_before = (when, key if kind == 0 else "\uffff")
        rejections_before = (when, int(key) if kind == 1 else -1)
    wanted = set(statuses)
    if failed:
        wanted |= {*FAILED_STATUSES, "rejected"}
    rows: list[HistoryRow] = []
    delivery_statuses = tuple(sorted(wanted - {"rejected"}))
    if not wanted or delivery_statuses:
        for d in queue.deliveries(
            statuses=delivery_statuses,
            since=since,
            endpoint=endpoint,
            limit=limit,
            before=deliveries_before,
        ):
            rows.append(
                HistoryRow(
                    d.received_at,
                    d.id,
                    d.endpoint,
                    d.event_type or "-",
                    d.status,
                    d.attempts,
                    d.last_error or "",
                )
            )
    if not wanted or "rejected" in wanted:
        for r in queue.rejections(
            since=since, endpoint=endpoint, limit=limit, before=rejections_before
        ):
            rows.append(
                HistoryRow(
                    r.received_at,
                    f"r{r.id}",
                    r.endpoint,
                    "-",
                    "rejected",
                    0,
                    f"{r.reason}: {r.hint}",
                )
            )
    rows.sort(key=_order, reverse=True)
    return rows[:limit]


def cursor(row: HistoryRow) -> str:
    """Where the next page starts: ``<time>:<kind>:<id>`` (kind 1 for a rejection)."""
    if row.status == "rejected":
        return f"{row.time!r}:1:{row.id[1:]}"
    return f"{row.time!r}:0:{row.id}"


def _order(row: HistoryRow) -> tuple[float, int, Any]:
    if row.status == "rejected":
        return (row.time, 1, int(row.id[1:]))
    return (row.time, 0, row.id)


def _parse_cursor(text: str) -> tuple[float, int, str]:
    try:
        when, kind, key = text.split(":", 2)
        parsed = (float(when), int(kind), key)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a history cursor (it looks like 1764000000.5:0:ab12)"
        ) from None
    if parsed[1] not in (0, 1) or (parsed[1] == 1 and not key.isdigit()):
        raise ValueError(f"{text!r} is not a history cursor")
    return parsed


def utc_time(when: float) -> str:
    """``2026-12-02 21:52:03``: how the CLI and the dashboard show a time, always in UTC (the
    headings say so), so that both show the same clock whatever the host's zone."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))


def format_table(rows: list[HistoryRow], *, width: int = 60) -> str:
    """A plain-text table: time (UTC), id, endpoint, event, status, attempts, what went wrong."""
    header = ("TIME (UTC)", "ID", "ENDPOINT", "EVENT", "STATUS", "ATTEMPTS", "LAST ERROR / REASON")
    lines = [
        (
            utc_time(row.time),
            printable(row.id[:12], newlines=False),
            printable(row.endpoint[:24], newlines=False),
            printable(row.event[:24], newlines=False),
            row.status,
            str(row.attempts),
            _clip(printable(row.detail, newlines=False), width),
        )
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (header, *lines)
    )


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
