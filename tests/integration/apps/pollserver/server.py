"""A test app: a plain script serving on its own port, with a thread that ticks in time.sleep()."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ticks = 0


def tick():
    global ticks
    while True:
        time.sleep(0.05)
        ticks += 1


ticker = threading.Thread(target=tick, daemon=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"ticker {'alive' if ticker.is_alive() else 'dead'} after {ticks} ticks\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ticker.start()
ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
