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
) -> list[HistoryRow]:
    """Newest first. ``failed`` selects rejections plus retrying and dead deliveries;
    ``statuses`` may name delivery statuses and ``rejected``."""
    wanted = set(statuses)
    if failed:
        wanted |= {*FAILED_STATUSES, "rejected"}
    rows: list[HistoryRow] = []
    delivery_statuses = tuple(sorted(wanted - {"rejected"}))
    if not wanted or delivery_statuses:
        for d in queue.deliveries(
            statuses=delivery_statuses, since=since, endpoint=endpoint, limit=limit
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
        for r in queue.rejections(since=since, endpoint=endpoint, limit=limit):
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
    rows.sort(key=lambda row: row.time, reverse=True)
    return rows[:limit]


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
