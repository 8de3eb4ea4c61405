"""`send` through the proxy the environment names (HTTP_PROXY), and around it for NO_PROXY
hosts, as curl and requests do."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers import BIN


@contextmanager
def recording_server(name: str, seen: list[tuple[str, str]]) -> Iterator[int]:
    """A loopback HTTP server that records (its name, the request line) and answers 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append((name, self.requestline))
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = b'{"status": "ok", "id": "x"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def send(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [str(BIN / "webhook-guard"), "send", url, "--secret", "s"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_send_goes_through_http_proxy_and_around_it_for_no_proxy_hosts() -> None:
    """HTTP_PROXY: the proxy gets the absolute URL; NO_PROXY naming the host: the target gets
    the request directly."""
    seen: list[tuple[str, str]] = []
    with recording_server("proxy", seen) as proxy, recording_server("target", seen) as target:
        url = f"http://127.0.0.1:{target}/webhook"
        via = send(url, HTTP_PROXY=f"http://127.0.0.1:{proxy}")
        assert via.returncode == 0, via.stderr
        assert seen == [("proxy", f"POST {url} HTTP/1.1")]
        seen.clear()
        direct = send(url, HTTP_PROXY=f"http://127.0.0.1:{proxy}", NO_PROXY="127.0.0.1")
        assert direct.returncode == 0, direct.stderr
        assert seen == [("target", "POST /webhook HTTP/1.1")]
