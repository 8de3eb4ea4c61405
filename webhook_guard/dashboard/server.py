"""``webhook-guard dashboard``: the dashboard on the standard library's WSGI server.

Bound to loopback and letting in loopback clients only (``loopback_only``): the dashboard has
no login of its own, and the history holds request bodies and headers. To reach it from another
machine, use an SSH tunnel (``ssh -L 8089:127.0.0.1:8089 host``) or mount it in your app behind
its login. ``public=True`` drops both limits; only behind an authenticating proxy.

This module imports only the standard library and webhook_guard.
"""

from __future__ import annotations

import signal
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from webhook_guard.dashboard.app import (
    Dashboard,
    DashboardSource,
    RequestInfo,
    is_loopback_host,
    loopback_only,
)
from webhook_guard.exceptions import ConfigurationError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "NOT_LOOPBACK", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8089
NOT_LOOPBACK = (
    "{host} is not a loopback address. The dashboard has no login of its own and shows "
    "request bodies and headers (and can replay deliveries) to whoever reaches it. Keep it on "
    "127.0.0.1 and use an SSH tunnel, or mount it in your app behind its login "
    "(docs/dashboard.md). If an authenticating proxy guards it, pass --i-know-this-is-public."
)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # A browser's idle pre-connection must not hold up every other request.
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _anyone(request: RequestInfo) -> bool:
    return True


def serve(
    queue: DashboardSource,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    public: bool = False,
    allow_replay: bool = True,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard of ``queue`` until SIGTERM or Ctrl-C.

    Args:
        host: a loopback address unless ``public``.
        port: 0 picks a free one; ``ready`` gets the URL once listening.
        public: let in any client on any address (no authorization at all).
        allow_replay: show Replay buttons.
    """
    if not public and not is_loopback_host(host):
        raise ConfigurationError(NOT_LOOPBACK.format(host=host))
    dashboard = Dashboard(
        queue, authorize=_anyone if public else loopback_only, allow_replay=allow_replay
    )
    close = getattr(queue, "close", None)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return dashboard.wsgi(environ, start_response)
        finally:
            if callable(close):
                close()  # this request thread's SQLite connection; the thread ends next

    try:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_Handler)
    except OSError as error:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.server_address[1]}/"
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        # shutdown() waits for serve_forever to return: call it from another thread.
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        if ready is not None:
            ready(url)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
