"""A throwaway HTTP server on 127.0.0.1 for tests that play a registry (or any peer) badly.

class Handler(Quiet):
    def do_GET(self) -> None:
        self.reply(b"{}", "application/json")

server = LocalHTTP(Handler)   # server.port; server.close() when done
"""

from __future__ import annotations

import http.server
import threading


class Quiet(http.server.BaseHTTPRequestHandler):
    """A handler that logs nothing and answers whole bodies with reply()."""

    def reply(self, body: bytes = b"", media_type: str = "", status: int = 200) -> None:
        self.send_response(status)
        if media_type:
            self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class LocalHTTP:
    """A threaded HTTP server for `handler` on an ephemeral loopback port, until close()."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
