"""http.server from the stdlib, as a script. Inside its handler it resolves localhost (the
sandbox needs /etc/hosts for that) and encodes cp1252 (a codec only a script names)."""

import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/":
            addrs = sorted({a[4][0] for a in socket.getaddrinfo("localhost", 8000,
                                                                 type=socket.SOCK_STREAM)})
            me = socket.gethostname()
            my_addr = socket.getaddrinfo(me, None, socket.AF_INET)[0][4][0]
            euro = "€".encode("cp1252")
            self.reply(200, f"hello from stdlib_http: localhost is {', '.join(addrs)}; "
                            f"{me} is {my_addr}; cp1252 euro is {euro.hex()}\n".encode(),
                       "text/plain")
        elif self.path == "/error":
            try:
                raise RuntimeError("the error route fails on purpose")
            except RuntimeError as e:
                self.log_error("%s: %s", type(e).__name__, e)
                self.send_error(500, explain=str(e))
        elif self.path == "/crash":
            # Uncaught: socketserver's handle_error prints the traceback (traceback is
            # imported lazily there) and drops this connection; the server goes on.
            raise RuntimeError("the crash route fails on purpose")
        else:
            self.send_error(404)

    def do_POST(self):
        if self.path != "/echo":
            self.send_error(404)
            return
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.reply(200, json.dumps({"echo": data}).encode(), "application/json")

    def reply(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler)
    print(f"serving on port {server.server_address[1]}", flush=True)
    server.serve_forever()
